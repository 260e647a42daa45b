package daemon

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/testpeer"
)

// apiService is a service in /api/status and /api/services/{name}.
type apiService struct {
	Name, State, Cause string
	Latency            float64   `json:"latency_seconds"`
	LastCheck          time.Time `json:"last_check"`
	CertExpiry         time.Time `json:"cert_expiry"`
	DNS                string    `json:"dns"`
	DNSDetail          string    `json:"dns_detail"`
	Days               []struct {
		Date    string
		Up      uint32 `json:"up_seconds"`
		Down    uint32 `json:"down_seconds"`
		Unknown uint32 `json:"unknown_seconds"`
		Uptime  *float64
	} `json:"days"`
}

// apiStatus fetches /api/status from the lab's admin listener.
// checkRounds waits until /api/status shows n more checks of service.
func checkRounds(t *testing.T, adminAddr, service string, n int) {
	t.Helper()
	for range n {
		last := apiStatus(t, adminAddr)[service].LastCheck
		waitFor(t, "a check round of "+service, func() bool { return apiStatus(t, adminAddr)[service].LastCheck.After(last) })
	}
}

func apiStatus(t *testing.T, adminAddr string) map[string]apiService {
	t.Helper()
	code, _, body := fetchStatus(t, &http.Client{Timeout: 10 * time.Second}, "http://"+adminAddr+"/api/status")
	if code != 200 {
		t.Fatalf("/api/status = %d %s", code, body)
	}
	var out struct{ Services []apiService }
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	m := map[string]apiService{}
	for _, s := range out.Services {
		m[s.Name] = s
	}
	return m
}

// apiServiceDetail fetches /api/services/{name}.
func apiServiceDetail(t *testing.T, adminAddr, name string) apiService {
	t.Helper()
	code, _, body := fetchStatus(t, &http.Client{Timeout: 10 * time.Second}, "http://"+adminAddr+"/api/services/"+name)
	if code != 200 {
		t.Fatalf("/api/services/%s = %d %s", name, code, body)
	}
	var s apiService
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// A service whose health check fails is down on the status API with the
// check's cause and latency, and the history records it: today's bar has
// up and down seconds, and the check's own series has the failures. A
// service without checks still has a state: the gateway's view.
func TestStatusFromHealth(t *testing.T) {
	var failing atomic.Bool
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			http.Error(w, "database is gone", http.StatusBadGateway)
		}
	}))
	t.Cleanup(be.Close)
	l := startLabWith(t, false, fmt.Sprintf(
		"  - { name: app, host: app, backend: %q, health: { interval: 1s, timeout: 1s, failures: 1, successes: 1 } }\n", be.URL))
	adm := l.addr(admin)

	waitFor(t, "app up with a latency", func() bool {
		s := apiStatus(t, adm)["app"]
		return s.State == "up" && s.Latency > 0 && !s.LastCheck.IsZero()
	})
	// Up for a few rounds: enough to span three seconds, since the history
	// keeps one result per series and second (rounds 1 s apart can share
	// one, and the first down result can take the last up one's second).
	checkRounds(t, adm, "app", 4)
	failing.Store(true)
	waitFor(t, "app down", func() bool { return apiStatus(t, adm)["app"].State == "down" })
	checkRounds(t, adm, "app", 2) // down for a few rounds

	all := apiStatus(t, adm)
	app := all["app"]
	if !strings.Contains(app.Cause, "inside check http") || !strings.Contains(app.Cause, "502") {
		t.Errorf("app's cause %q, want the failing check and its status", app.Cause)
	}
	if app.Latency <= 0 {
		t.Errorf("app's latency %v, want the last check's", app.Latency)
	}
	for _, name := range []string{"www", "vault"} {
		if s := all[name]; s.State != "up" {
			t.Errorf("%s (no health checks) is %q, want up from its backends", name, s.State)
		}
	}
	detail := apiServiceDetail(t, adm, "app")
	if len(detail.Days) != 90 {
		t.Fatalf("%d days, want 90", len(detail.Days))
	}
	today := detail.Days[89]
	if today.Date != time.Now().UTC().Format("2006-01-02") || today.Down == 0 || today.Up == 0 || today.Uptime == nil || *today.Uptime >= 1 {
		t.Errorf("today's bar %+v, want up and down seconds", today)
	}
	st := l.d.status.hist.Load()
	if st == nil {
		t.Fatal("no history store")
	}
	raw, err := st.Raw("app", "http", time.Now().Add(-time.Minute), time.Now().Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var ups, downs int
	for _, r := range raw {
		switch r.State.String() {
		case "up":
			ups++
		case "down":
			downs++
		}
	}
	if ups < 2 || downs < 2 {
		t.Errorf("the check's series has %d up and %d down results, want each check result recorded", ups, downs)
	}
	// Back up: the state follows.
	failing.Store(false)
	waitFor(t, "app up again", func() bool { return apiStatus(t, adm)["app"].State == "up" })
}

// The status API shows when the internal CA's certificate of a host
// expires and whether its DNS records are in place on a real BIND. A DNS
// provider that stops answering raises exactly one alert at a webhook
// receiver (and a new host's records are failing on the API); a reload
// that fixes it resolves the alert.
func TestDNSStateAndAlert(t *testing.T) {
	h := newHook(t, "k")
	b := testpeer.StartBIND(t, "lab.test", `blog IN A 192.0.2.1`)
	dnsSection := func(server string) string {
		return fmt.Sprintf(`relay: { public_ips: [203.0.113.7], gateway: 127.0.0.11 }
dns:
  provider: { type: rfc2136, server: %q, tsig_name: %q, tsig_secret: %q }
  owner: labtest
  interval: 1h
alerts:
  ops: { webhook: { url: %q, secret: k } }
`, server, b.KeyName, b.Secret, h.srv.URL)
	}
	l := startLabWith(t, false, dnsSection(b.Addr))
	adm := l.addr(admin)

	waitFor(t, "DNS records in place", func() bool {
		s := apiStatus(t, adm)
		return s["www"].DNS == "ok" && s["vault"].DNS == "ok"
	})
	// The internal CA issues vault's certificate on the first handshake.
	resp, err := l.client(l.addr(privHTTPS), "", "").Get("https://vault.lab.test/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	leaf := resp.TLS.PeerCertificates[0]
	if got := apiStatus(t, adm)["vault"].CertExpiry; !got.Equal(leaf.NotAfter) {
		t.Errorf("vault's certificate expiry %v, want %v", got, leaf.NotAfter)
	}

	// The provider stops answering (nothing listens there), and a new
	// service waits for its record.
	closed := net.JoinHostPort("127.0.0.1", testpeer.FreePort(t, "127.0.0.1"))
	wiki := `  - { name: wiki, host: wiki, backend: "` + l.backend["vault"].URL + `" }` + "\n"
	l.write(fmt.Sprintf(labConfig, l.backend["www"].URL, l.backend["vault"].URL) + wiki + dnsSection(closed))
	if !l.d.Reload() {
		t.Fatalf("reload refused\n%s", l.logs)
	}
	waitFor(t, "the alert", func() bool { return len(h.messages()) >= 1 })
	s := apiStatus(t, adm)
	if w := s["wiki"]; w.DNS != "failing" || !strings.Contains(w.DNSDetail, closed) {
		t.Errorf("wiki's DNS %q (%s), want failing, naming the server", w.DNS, w.DNSDetail)
	}
	if w := s["www"]; w.DNS != "ok" || !strings.Contains(w.DNSDetail, "failed") {
		t.Errorf("www's DNS %q (%s), want ok (its records stand) but saying reconciling fails", w.DNS, w.DNSDetail)
	}
	first := h.messages()[0]
	if first.Kind != "firing" || first.Cause != "dns" || !strings.Contains(first.Title, "lab.test") || !strings.Contains(first.Detail, closed) {
		t.Errorf("alert %+v", first)
	}

	// Fixed by a reload: resolved, once.
	l.write(fmt.Sprintf(labConfig, l.backend["www"].URL, l.backend["vault"].URL) + wiki + dnsSection(b.Addr))
	if !l.d.Reload() {
		t.Fatalf("reload refused\n%s", l.logs)
	}
	waitFor(t, "the resolve", func() bool { return len(h.messages()) >= 2 })
	waitFor(t, "wiki's records in place", func() bool { return apiStatus(t, adm)["wiki"].DNS == "ok" })
	time.Sleep(500 * time.Millisecond)
	if got := h.summary(); got != "firing:dns resolved:dns" {
		t.Errorf("received %s, want one alert and its resolve", got)
	}
}

// A certificate that cannot be obtained (the ACME CA does not answer)
// raises an alert; a reload pointing at a working CA (pebble) obtains it,
// resolves the alert, and the status API shows its expiry.
func TestCertFailureAlert(t *testing.T) {
	h := newHook(t, "k")
	p := pebbleLab.Pebble(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "lab.yaml")
	backend := newBackend(t, "www")
	write := func(ca string) {
		s := fmt.Sprintf(`version: 1
domain: lab.test
state_dir: ./state
tls:
  acme: { email: admin@lab.test, ca: %q, ca_roots: [%q] }
gateway:
  private: { https: ["127.0.0.1:%d"], http: ["127.0.0.1:%d"], allow: [127.0.0.0/8] }
  admin: %q
  limits: { shutdown_grace: 1s }
services:
  - { name: www, host: www, backend: %q }
alerts:
  ops: { webhook: { url: %q, secret: k } }
`, ca, p.CAFile, p.TLSPort, p.HTTPPort, admin, backend.URL, h.srv.URL)
		if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dead := "https://" + net.JoinHostPort("127.0.0.1", testpeer.FreePort(t, "127.0.0.1")) + "/dir"
	write(dead)
	logs := &testpeer.Buffer{}
	d, cancel, done := runDaemon(t, Options{
		Load:               func() (*config.Config, error) { return config.Load(file, config.Options{}) },
		Stderr:             logs,
		RenewCheckInterval: time.Second,
	}, logs, 10*time.Second)
	t.Cleanup(func() { stopDaemon(t, cancel, done, logs) })

	waitLong(t, "the certificate alert", func() bool { return len(h.messages()) >= 1 })
	first := h.messages()[0]
	if first.Kind != "firing" || first.Cause != "cert/www.lab.test" || !strings.Contains(first.Title, "www.lab.test") || first.Detail == "" {
		t.Errorf("alert %+v", first)
	}

	write(p.Directory)
	if !d.Reload() {
		t.Fatalf("reload refused\n%s", logs)
	}
	waitLong(t, "the resolve", func() bool { return len(h.messages()) >= 2 })
	if got := h.summary(); got != "firing:cert/www.lab.test resolved:cert/www.lab.test" {
		t.Errorf("received %s, want one alert and its resolve", got)
	}
	waitFor(t, "the expiry on the status API", func() bool { return !apiStatus(t, d.adminAddr())["www"].CertExpiry.IsZero() })
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p.TLSPort), &tls.Config{ServerName: "www.lab.test", RootCAs: p.Roots(t)})
	if err != nil {
		t.Fatal(err)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	if exp := apiStatus(t, d.adminAddr())["www"].CertExpiry; !exp.Equal(leaf.NotAfter) {
		t.Errorf("www's certificate expiry %v on the status API, the served one expires %v", exp, leaf.NotAfter)
	}
}
