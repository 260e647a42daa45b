package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/alert"
	"github.com/labgate/labgate/internal/health"
	"github.com/labgate/labgate/internal/relay"
)

// hook is a webhook receiver that keeps the messages it was sent.
type hook struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []alert.Message
}

func newHook(t *testing.T, secret string) *hook {
	h := &hook{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if sig := r.Header.Get("X-Labgate-Signature"); sig != "sha256="+alert.Sign([]byte(secret), body) {
			t.Errorf("bad signature %q", sig)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var m alert.Message
		if err := json.Unmarshal(body, &m); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		h.mu.Lock()
		h.got = append(h.got, m)
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) messages() []alert.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}

func (h *hook) summary() string {
	var out []string
	for _, m := range h.messages() {
		out = append(out, m.Kind+":"+m.Cause)
	}
	return strings.Join(out, " ")
}

// relayRun is a labgate relay in front of the lab's public HTTPS listener
// that the test can stop and start again.
type relayRun struct {
	t      *testing.T
	target string
	addr   atomic.Value // string: where the relay listens now
	cancel context.CancelFunc
	done   chan error
}

func (r *relayRun) start() {
	r.t.Helper()
	ro := relay.Options{
		Routes:        []relay.Route{{Name: "https", Proto: "tcp", Listen: "127.0.0.42:0", Target: r.target, PeekTLS: true}},
		ProbeInterval: -1,
	}
	ready := make(chan struct{})
	d := NewRelay(RelayOptions{
		Load:   func() (RelaySetup, error) { return RelaySetup{Relay: ro}, nil },
		Stderr: io.Discard,
		Ready:  func(*Relay) { close(ready) },
	})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- d.Run(ctx) }()
	select {
	case <-ready:
	case err := <-r.done:
		r.t.Fatalf("relay stopped: %v", err)
	case <-time.After(10 * time.Second):
		r.t.Fatal("relay did not start")
	}
	waitFor(r.t, "relay listening", func() bool { return d.Addr("https") != nil })
	r.addr.Store(d.Addr("https").String())
}

func (r *relayRun) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	if err := <-r.done; err != nil {
		r.t.Errorf("relay: %v", err)
	}
	r.cancel = nil
}

// TestRelayCutOffOneAlert runs serve with public services checked from
// outside through a real labgate relay. Stopping the relay makes one
// grouped alert that names the services it cut off (not one per service),
// and starting it again resolves it; the services stay degraded, not down,
// meanwhile: inside, they work.
func TestRelayCutOffOneAlert(t *testing.T) {
	h := newHook(t, "k")
	blog, wiki := newBackend(t, "blog"), newBackend(t, "wiki")
	r := &relayRun{t: t}
	extra := fmt.Sprintf(`  - { name: blog, host: blog, expose: public, backend: %q, alert: [ops],
      health: { interval: 1s, timeout: 1s, failures: 1, successes: 1 } }
  - { name: wiki, host: wiki, expose: public, backend: %q, alert: [ops],
      health: { interval: 1s, timeout: 1s, failures: 1, successes: 1 } }
relay: { public_ips: [127.0.0.42], gateway: 127.0.0.11 }
alerts:
  ops: { webhook: { url: %q, secret: k } }
`, blog.URL, wiki.URL, h.srv.URL)
	// Outside checks connect to whatever the relay's public address
	// resolves to; here, the relay on its loopback port.
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if _, port, _ := net.SplitHostPort(addr); port != "443" {
			return nil, fmt.Errorf("unexpected outside address %s", addr)
		}
		// The relay exists from the start: wait for the test to start it.
		for r.addr.Load() == nil {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
		return (&net.Dialer{}).DialContext(ctx, network, r.addr.Load().(string))
	}
	l := startLabOptions(t, false, extra, func(o *Options) { o.OutsideDial = dial })
	r.target = l.addr(pubHTTPS)
	r.start()
	defer r.stop()

	state := func(name string) health.ServiceStatus {
		s, _ := l.d.Health().Service(name)
		return s
	}
	// Patience of waitLong: the checks run every second through a real relay,
	// and a loaded machine (the race detector, two cores) can take a while.
	waitLong(t, "blog and wiki up, inside and outside, and the relay path", func() bool {
		snap := l.d.Health()
		if snap.Relay == nil || snap.Relay.State != health.Up {
			return false
		}
		for _, name := range []string{"blog", "wiki"} {
			s, _ := snap.Service(name)
			if s.State != health.Up || len(s.Checks) != 2 || s.Checks[0].State != health.Up || s.Checks[1].State != health.Up {
				return false
			}
		}
		return true
	})

	r.stop()
	waitLong(t, "the grouped alert", func() bool { return len(h.messages()) > 0 })
	for _, name := range []string{"blog", "wiki"} {
		if s := state(name); s.State != health.Degraded || s.Cause != health.CauseRelay {
			t.Errorf("%s: %s (%s: %s), want degraded by the relay", name, s.State, s.Cause, s.Reason)
		}
	}
	// The status API shows the relay path down, with the check's cause.
	var api struct {
		Relay *struct{ State, Cause string } `json:"relay"`
	}
	_, _, body := fetchStatus(t, &http.Client{Timeout: 5 * time.Second}, "http://"+l.addr(admin)+"/api/status")
	if err := json.Unmarshal([]byte(body), &api); err != nil || api.Relay == nil || api.Relay.State != "down" || !strings.Contains(api.Relay.Cause, "relay check") {
		t.Errorf("relay on the status API: %v %.400s", err, body)
	}
	// And among its problems, as the alert tells it (openproblems.go).
	if p, ok := apiProblems(t, l.addr(admin)); !ok ||
		p[causeRelay].Title != h.messages()[0].Title || !strings.Contains(p[causeRelay].Detail, "VPN") {
		t.Errorf("the status API's problems %+v, want the relay path's as alerted (%q)", p, h.messages()[0].Title)
	}
	r.start()
	waitLong(t, "the resolve", func() bool { return len(h.messages()) >= 2 })
	waitLong(t, "blog and wiki up again", func() bool {
		return state("blog").State == health.Up && state("wiki").State == health.Up
	})

	if p, _ := apiProblems(t, l.addr(admin)); len(p) != 0 {
		t.Errorf("problems once the relay path is back: %+v", p)
	}
	if got := h.summary(); got != "firing:relay resolved:relay" {
		t.Fatalf("received %s, want one grouped alert and its resolve", got)
	}
	first := h.messages()[0]
	if !slices.Equal(first.Services, []string{"blog", "wiki"}) || first.Title != "relay path broken: cuts off blog, wiki" {
		t.Errorf("alert %q names %v", first.Title, first.Services)
	}
	m := scrape(t, l.addr(admin))
	for _, want := range []string{
		`labgate_service_state{service="blog",state="up"} 1`,
		`labgate_check_success{check="http",scope="outside",service="blog"} 1`,
		`labgate_check_success{check="relay",scope="outside",service=""} 1`,
		`labgate_alert_notifications_total{receiver="ops",result="success"} 2`,
		`labgate_alert_queue_length 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grep(m, "labgate_"))
		}
	}
}

// Requests the gateway proxies feed the passive signals of their service.
func TestPassiveSignals(t *testing.T) {
	l := startLab(t)
	c := l.client(l.addr(privHTTPS), "", "")
	for range 3 {
		if code, _, body := get(t, c, "https://vault.lab.test/x"); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
	}
	s, ok := l.d.Health().Service("vault")
	if !ok || s.Traffic.Requests != 3 || s.Traffic.Errors != 0 {
		t.Errorf("vault traffic %+v", s.Traffic)
	}
}

// A failed certificate renewal or DNS update is alerted to alerting.notify
// and resolved when the next attempt works.
func TestRaiseAlert(t *testing.T) {
	h := newHook(t, "k")
	l := startLabWith(t, false, fmt.Sprintf("alerts:\n  ops: { webhook: { url: %q, secret: k } }\n", h.srv.URL))
	l.d.RaiseAlert("cert/www.lab.test", "certificate renewal failed for www.lab.test", "acme: urn:ietf:params:acme:error:rateLimited")
	l.d.RaiseAlert("cert/www.lab.test", "certificate renewal failed for www.lab.test", "acme: urn:ietf:params:acme:error:rateLimited")
	waitFor(t, "the alert", func() bool { return len(h.messages()) >= 1 })
	l.d.ClearAlert("cert/www.lab.test")
	waitFor(t, "the resolve", func() bool { return len(h.messages()) >= 2 })
	if got := h.summary(); got != "firing:cert/www.lab.test resolved:cert/www.lab.test" {
		t.Errorf("received %s", got)
	}
	if m := h.messages()[0]; m.Detail != "acme: urn:ietf:params:acme:error:rateLimited" {
		t.Errorf("detail %q", m.Detail)
	}
}

// A reload keeps check states and open incidents: an alert that fired
// before is neither repeated nor resolved by it, and resolves once after.
func TestReloadKeepsAlerts(t *testing.T) {
	h := newHook(t, "k")
	var failing atomic.Bool
	failing.Store(true)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			http.Error(w, "broken", http.StatusBadGateway)
		}
	}))
	t.Cleanup(be.Close)
	app := fmt.Sprintf("  - { name: app, host: app, backend: %q, alert: [ops], health: { interval: 1s, timeout: 1s, failures: 1, successes: 1 } }\n", be.URL)
	alerts := fmt.Sprintf("alerts:\n  ops: { webhook: { url: %q, secret: k } }\n", h.srv.URL)
	l := startLabWith(t, false, app+alerts)
	waitFor(t, "the alert", func() bool { return len(h.messages()) >= 1 })

	l.write(fmt.Sprintf(labConfig, l.backend["www"].URL, l.backend["vault"].URL) + app +
		"  - { name: other, host: other, echo: true }\n" + alerts + "alerting: { reminder: 1h }\n")
	if !l.d.Reload() {
		t.Fatalf("reload refused\n%s", l.logs)
	}
	if s, _ := l.d.Health().Service("app"); s.State != health.Down {
		t.Errorf("after the reload app is %s, want still down", s.State)
	}
	// Let a few check rounds pass on the new generation.
	checkRounds(t, l.addr(admin), "app", 2)
	if got := h.summary(); got != "firing:service/app" {
		t.Fatalf("after the reload: %s", got)
	}
	failing.Store(false)
	waitFor(t, "the resolve", func() bool { return len(h.messages()) >= 2 })
	if got := h.summary(); got != "firing:service/app resolved:service/app" {
		t.Errorf("received %s", got)
	}
}
