package daemon

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/statefile"
	"github.com/labgate/labgate/internal/statefile/damage"
	"github.com/labgate/labgate/internal/status"
	"github.com/labgate/labgate/internal/testpeer"
)

// apiProblems fetches the admin API's problems by cause; ok is false when
// the list is missing from the answer.
func apiProblems(t *testing.T, adminAddr string) (m map[string]status.Problem, ok bool) {
	t.Helper()
	code, _, body := fetchStatus(t, &http.Client{Timeout: 10 * time.Second}, "http://"+adminAddr+"/api/status")
	if code != 200 {
		t.Fatalf("/api/status = %d %s", code, body)
	}
	var out struct {
		Problems *[]status.Problem `json:"problems"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	if out.Problems == nil {
		return nil, false
	}
	m = map[string]status.Problem{}
	for _, p := range *out.Problems {
		m[p.Cause] = p
	}
	return m, true
}

// A lab without alert receivers whose DNS provider cannot be reached and
// whose history.db was damaged by a power loss: the admin status page and
// its API show both problems with what to do, the public page and API
// show neither, labgate_problems counts them; each ends when it is fixed,
// they survive reloads, and the damaged copy's problem is told again after
// a restart.
func TestProblemsOnTheStatusPage(t *testing.T) {
	l := &lab{t: t, dir: t.TempDir(), logs: &testpeer.Buffer{}, backend: map[string]*httptest.Server{}}
	l.backend["www"] = newBackend(t, "www")
	l.backend["vault"] = newBackend(t, "vault")
	l.file = filepath.Join(l.dir, "lab.yaml")
	state := filepath.Join(l.dir, "state")
	good, err := os.ReadFile("../history/testdata/serve-history.db")
	if err != nil {
		t.Fatal(err)
	}
	writeState(t, filepath.Join(state, "history.db"), damage.Bolt(good)["half"])

	closed := net.JoinHostPort("127.0.0.1", testpeer.FreePort(t, "127.0.0.1"))
	file := func(dnsServer, more string) string {
		return fmt.Sprintf(labConfig, l.backend["www"].URL, l.backend["vault"].URL) + more + fmt.Sprintf(`status:
  public: { host: status }
relay: { public_ips: [203.0.113.7], gateway: 127.0.0.11 }
dns:
  provider: { type: rfc2136, server: %q, tsig_name: k., tsig_secret: c2VjcmV0 }
  owner: labtest
  interval: 1h
`, dnsServer)
	}
	l.write(file(closed, ""))
	opts := Options{Load: func() (*config.Config, error) { return config.Load(l.file, config.Options{}) }, Stderr: l.logs}
	l.run(opts, 10*time.Second)
	t.Cleanup(l.stop)
	l.trustInternalCA()
	adm := l.addr(admin)

	asides, _ := filepath.Glob(filepath.Join(state, "history.db.damaged-*"))
	if len(asides) != 1 {
		t.Fatalf("copies aside: %v\n%s", asides, l.logs)
	}
	aside := asides[0]
	stateCause := causeStatePrefix + filepath.Base(aside)

	var open map[string]status.Problem
	waitFor(t, "both problems in /api/status", func() bool {
		open, _ = apiProblems(t, adm)
		return len(open) == 2
	})
	if p := open[causeDNS]; !strings.Contains(p.Title, "DNS records of lab.test not reconciled") ||
		!strings.Contains(p.Detail, closed) || !strings.Contains(p.Detail, "labgate retries") || p.Since.IsZero() {
		t.Errorf("DNS problem %+v", p)
	}
	st := open[stateCause]
	if st.Title != "state_dir/history.db was damaged: moved aside, started afresh" ||
		!strings.Contains(st.Detail, "uptime and latency history is lost") || !strings.Contains(st.Detail, "kept at "+aside) {
		t.Errorf("state problem %+v (want cause %s)", st, stateCause)
	}

	// The admin page shows them above the services.
	c := &http.Client{Timeout: 10 * time.Second}
	_, _, page := fetchStatus(t, c, "http://"+adm+"/")
	block, _, _ := strings.Cut(page, `id="services"`)
	for _, want := range []string{`id="problems"`, "Needs your attention: 2 problems", "DNS records of lab.test not reconciled",
		"state_dir/history.db was damaged", "kept at " + aside, "labgate retries"} {
		if !strings.Contains(block, want) {
			t.Errorf("the admin page above the services lacks %q:\n%s", want, block)
		}
	}
	// The public page and API never do.
	pub := l.client(l.addr(privHTTPS), "", "")
	for _, target := range []string{"https://status.lab.test/", "https://status.lab.test/api/status"} {
		code, _, b := fetchStatus(t, pub, target)
		if code != 200 {
			t.Fatalf("%s = %d", target, code)
		}
		for _, secret := range []string{`"problems"`, `id="problems"`, "not reconciled", "history.db", closed, "attention"} {
			if strings.Contains(b, secret) {
				t.Errorf("public %s shows %q", target, secret)
			}
		}
	}
	metrics := scrape(t, adm)
	for _, want := range []string{`labgate_problems{kind="dns"} 1`, `labgate_problems{kind="state"} 1`, `labgate_problems{kind="cert"} 0`} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("metrics lack %s:\n%s", want, grep(metrics, "labgate_problems"))
		}
	}

	// DNS fixed (a provider that answers): its problem ends; the state
	// problem survives the reload, unchanged.
	b := testpeer.StartBIND(t, "lab.test", "")
	l.write(strings.Replace(file(b.Addr, ""), "tsig_name: k., tsig_secret: c2VjcmV0", fmt.Sprintf("tsig_name: %q, tsig_secret: %q", b.KeyName, b.Secret), 1))
	if !l.d.Reload() {
		t.Fatalf("reload refused\n%s", l.logs)
	}
	waitFor(t, "the DNS problem to end", func() bool {
		open, _ = apiProblems(t, adm)
		_, dnsOpen := open[causeDNS]
		return !dnsOpen
	})
	if p, ok := open[stateCause]; !ok || !p.Since.Equal(st.Since) || p.Detail != st.Detail {
		t.Errorf("after a reload the state problem is %+v (ok %v), want %+v", p, ok, st)
	}

	// A restart: history.db is whole now and its owner says nothing; the
	// copy still in state_dir is found and told again.
	l.stop()
	l.run(opts, 10*time.Second)
	adm = l.addr(admin)
	open, _ = apiProblems(t, adm)
	p, ok := open[stateCause]
	if !ok || !strings.Contains(p.Detail, aside) || p.Title != st.Title {
		t.Errorf("after a restart the problems are %+v", open)
	}
	if _, at, _ := statefile.Aside(aside); at.IsZero() || !p.Since.Equal(at) {
		t.Errorf("after a restart the state problem is open since %v, want the copy's time %v", p.Since, at)
	}

	// The copy removed and the file reloaded: nothing is left.
	if err := os.Remove(aside); err != nil {
		t.Fatal(err)
	}
	l.write(strings.Replace(readFile(t, l.file), "status:", `  - { name: wiki, host: wiki, backend: "`+l.backend["vault"].URL+`" }
status:`, 1))
	if !l.d.Reload() {
		t.Fatalf("reload refused\n%s", l.logs)
	}
	open, ok = apiProblems(t, adm)
	if !ok || len(open) != 0 {
		t.Errorf("problems after fixing everything: %+v (list present %v)", open, ok)
	}
	if _, _, page := fetchStatus(t, c, "http://"+adm+"/"); strings.Contains(page, `id="problems"`) {
		t.Error("the admin page shows a problems block without problems")
	}
	if m := scrape(t, adm); !strings.Contains(m, `labgate_problems{kind="state"} 0`+"\n") {
		t.Errorf("metrics: %s", grep(m, "labgate_problems"))
	}
}

// Raising again keeps the start and records a change of the text; the
// gauge counts by kind, any unknown prefix as "other".
func TestOpenProblems(t *testing.T) {
	now := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	reg := prometheus.NewRegistry()
	p := newOpenProblems(reg, func() time.Time { return now })
	if !p.raise("dns", "DNS records of lab.test not reconciled", "timeout") {
		t.Error("a new problem was not new")
	}
	now = now.Add(time.Minute)
	p.raise("dns", "DNS records of lab.test not reconciled", "timeout")
	if got := p.list(); len(got) != 1 || !got[0].Changed.Equal(got[0].Since) {
		t.Errorf("the same text again changed it: %+v", got)
	}
	now = now.Add(time.Minute)
	if p.raise("dns", "DNS records of lab.test not reconciled", "refused") {
		t.Error("an open problem was raised as new")
	}
	p.raiseSince("state/x.damaged-20261125T120000Z", "x", "y", time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	p.raise("wireguard/wg0", "a", "b")
	got := p.list()
	if len(got) != 3 || got[0].Cause != "state/x.damaged-20261125T120000Z" || !got[0].Since.Equal(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)) {
		t.Fatalf("list %+v", got)
	}
	if d := got[1]; d.Cause != "dns" || d.Detail != "refused" || !d.Since.Equal(now.Add(-2*time.Minute)) || !d.Changed.Equal(now) {
		t.Errorf("dns %+v", d)
	}
	count := func() string {
		var b strings.Builder
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				fmt.Fprintf(&b, "%s=%v ", m.GetLabel()[0].GetValue(), m.GetGauge().GetValue())
			}
		}
		return b.String()
	}
	if c := count(); c != "cert=0 dns=1 other=1 state=1 " {
		t.Errorf("gauge %s", c)
	}
	p.clear("dns")
	p.clear("wireguard/wg0")
	p.clear("nothing")
	if c := count(); c != "cert=0 dns=0 state=1 " {
		t.Errorf("gauge after clearing %s", c)
	}
}
