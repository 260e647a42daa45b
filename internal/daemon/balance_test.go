package daemon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/labgate/labgate/internal/gateway"
	"github.com/labgate/labgate/internal/health"
)

// polledBackend is a backend whose /healthz the test can make fail, and
// that counts the health checks (User-Agent labgate-health) it receives.
type polledBackend struct {
	*httptest.Server
	name    string
	failing atomic.Bool
	checks  atomic.Int32 // health requests received
	failed  atomic.Int32 // of which answered 503
}

func newPolledBackend(t *testing.T, name string) *polledBackend {
	b := &polledBackend{name: name}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.UserAgent() == "labgate-health" {
			b.checks.Add(1)
			if b.failing.Load() {
				b.failed.Add(1)
				http.Error(w, "broken", http.StatusServiceUnavailable)
				return
			}
		}
		if r.URL.Path == "/healthz" {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(seen{Service: name, Host: r.Host, Path: r.URL.Path})
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *polledBackend) id() string { return "http://" + b.Listener.Addr().String() }

// Each backend of a service with an http check is polled once per round,
// by the health monitor, whose per-backend results drive the gateway's
// rotation: a backend failing its check is out after one round (the
// thresholds are for the service's state), stays out across a reload,
// and is back after one passing round. A service whose checks have no
// http check keeps the gateway's own probe of health.path.
func TestOnePollerPerBackend(t *testing.T) {
	a, b, c := newPolledBackend(t, "a"), newPolledBackend(t, "b"), newPolledBackend(t, "c")
	services := fmt.Sprintf(`  - { name: app, host: app, backends: [%q, %q], health: { path: /healthz, interval: 1s, timeout: 1s, failures: 3, successes: 3 } }
  - name: mail
    host: mail
    backend: %q
    health: { path: /healthz, interval: 1s, timeout: 1s, checks: [{ type: tcp, address: %q }] }
`, a.URL, b.URL, c.URL, c.Listener.Addr().String())
	l := startLabWith(t, false, services)
	cl := l.client(l.addr(privHTTPS), "", "")
	spread := func(host string, n int) map[string]int {
		t.Helper()
		got := map[string]int{}
		for range n {
			code, s, body := get(t, cl, "https://"+host+".lab.test/")
			if code != http.StatusOK {
				t.Fatalf("%s: %d %s", host, code, body)
			}
			got[s.Service]++
		}
		return got
	}
	// rounds is how many rounds of app's http check have passed (with or
	// without a warning): none fails while a passes.
	rounds := func() int {
		s, _ := l.d.Health().Service("app")
		for _, ch := range s.Checks {
			if ch.Check == "http" && ch.Scope == health.Inside {
				return ch.Successes
			}
		}
		return 0
	}
	// onePerRound checks that each of app's backends received one health
	// check per round (one more while a round is under way), not two.
	onePerRound := func(when string) {
		t.Helper()
		for {
			r := rounds()
			na, nb := int(a.checks.Load()), int(b.checks.Load())
			if rounds() != r {
				continue // a round ended meanwhile
			}
			for _, be := range []struct {
				name string
				n    int
			}{{"a", na}, {"b", nb}} {
				if be.n < r || be.n > r+1 {
					t.Errorf("%s: backend %s received %d health checks in %d rounds, want one per round", when, be.name, be.n, r)
				}
			}
			return
		}
	}
	upMetric := func(svc, backend string) string {
		m := `labgate_backend_up{backend="` + backend + `",service="` + svc + `"}`
		return strings.TrimPrefix(grep(scrape(t, l.addr(admin)), m), m+" ")
	}
	current := func() *gateway.Gateway {
		l.d.mu.Lock()
		defer l.d.mu.Unlock()
		return l.d.cur.gw
	}
	backendUp := func(gw *gateway.Gateway, svc, backend string) bool {
		for _, s := range gw.Backends() {
			if s.Service == svc && s.Backend == backend {
				return s.Up
			}
		}
		t.Fatalf("no backend %s of %s", backend, svc)
		return false
	}

	waitFor(t, "4 rounds of app's check", func() bool { return rounds() >= 4 })
	onePerRound("at first")
	if diff := cmp.Diff(map[string]int{"a": 5, "b": 5}, spread("app", 10)); diff != "" {
		t.Errorf("both in rotation (-want +got):\n%s", diff)
	}

	// b fails its check: out of rotation after its first failed round,
	// though the service needs 3 to be down (and, with a still passing, is
	// only degraded). b still answers real requests: only the check can
	// have taken it out.
	b.failing.Store(true)
	waitFor(t, "b out of rotation", func() bool { return upMetric("app", b.id()) == "0" })
	if n := b.failed.Load(); n > 2 {
		t.Errorf("b out of rotation after %d failed checks, want after the first (one more if a round was under way)", n)
	}
	if diff := cmp.Diff(map[string]int{"a": 10}, spread("app", 10)); diff != "" {
		t.Errorf("b failing (-want +got):\n%s", diff)
	}
	if s, _ := l.d.Health().Service("app"); s.State != health.Degraded {
		t.Errorf("app is %s, want degraded (one of two backends failing)", s.State)
	}
	down := func() int { return strings.Count(l.logs.String(), `msg="backend down" service=app backend=`+b.id()) }
	if down() != 1 || !strings.Contains(l.logs.String(), `why="health check failed" error="status 503 (want 2xx or 3xx)"`) {
		t.Errorf("b's transition not logged once:\n%s", grep(l.logs.String(), "backend"))
	}

	// A reload: the new generation starts with b out of rotation, without
	// waiting for the next round (the unchanged check keeps its rhythm).
	l.write(fmt.Sprintf(labConfig, l.backend["www"].URL, l.backend["vault"].URL) + services + "  - { name: other, host: other, echo: true }\n")
	if !l.d.Reload() {
		t.Fatalf("reload refused\n%s", l.logs)
	}
	if gw := current(); backendUp(gw, "app", b.id()) || !backendUp(gw, "app", a.id()) {
		t.Errorf("after the reload: %+v, want b down and a up", gw.Backends())
	}
	if diff := cmp.Diff(map[string]int{"a": 10}, spread("app", 10)); diff != "" {
		t.Errorf("after the reload (-want +got):\n%s", diff)
	}
	if upMetric("app", b.id()) != "0" {
		t.Errorf("labgate_backend_up of b after the reload: %s", upMetric("app", b.id()))
	}
	if down() != 1 {
		t.Errorf("b's state logged again by the new generation:\n%s", grep(l.logs.String(), "backend"))
	}

	// b passes again: back after one passing round.
	r := rounds()
	waitFor(t, "two more rounds", func() bool { return rounds() >= r+2 })
	before := b.checks.Load()
	b.failing.Store(false)
	waitFor(t, "b back in rotation", func() bool { return upMetric("app", b.id()) == "1" })
	if n := b.checks.Load() - before; n > 2 {
		t.Errorf("b back after %d checks, want after the first that passed (one more if a round was under way)", n)
	}
	if diff := cmp.Diff(map[string]int{"a": 5, "b": 5}, spread("app", 10)); diff != "" {
		t.Errorf("b back (-want +got):\n%s", diff)
	}
	if !strings.Contains(l.logs.String(), `msg="backend up" service=app backend=`+b.id()+` why="health check passed"`) {
		t.Errorf("b's return not logged:\n%s", grep(l.logs.String(), "backend"))
	}
	onePerRound("in the end")

	// mail has only a tcp check: the gateway still requests health.path on
	// its backend, and takes it out of rotation when that fails.
	waitFor(t, "the gateway's probe of mail", func() bool { return c.checks.Load() >= 2 })
	if diff := cmp.Diff(map[string]int{"c": 2}, spread("mail", 2)); diff != "" {
		t.Errorf("mail (-want +got):\n%s", diff)
	}
	c.failing.Store(true)
	waitFor(t, "c out of rotation", func() bool { return upMetric("mail", c.id()) == "0" })
	if code, _, body := get(t, cl, "https://mail.lab.test/"); code != http.StatusServiceUnavailable {
		t.Errorf("mail with its only backend failing its probe: %d %s", code, body)
	}
}
