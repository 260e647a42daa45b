package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/certs"
	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/relay"
	"github.com/labgate/labgate/internal/testacme"
	"github.com/labgate/labgate/internal/testpeer"
)

// pebbleLab is one pebble for the package's ACME tests.
var pebbleLab testacme.Shared

func TestMain(m *testing.M) { os.Exit(pebbleLab.Run(m)) }

// acmeLab is `labgate serve` with tls.acme pointed at pebble. By default
// its private listeners sit on the ports pebble validates HTTP-01 and
// TLS-ALPN-01 on; in relay mode labgate's relay sits there, in front of the
// gateway's public listeners.
type acmeLab struct {
	t      testing.TB
	p      *testacme.Pebble
	mode   acmeMode
	dir    string
	file   string
	https  string // where clients connect for HTTPS
	http   string // where clients connect for plain HTTP
	roots  *x509.CertPool
	d      *Daemon
	logs   *testpeer.Buffer
	cancel context.CancelFunc
	done   chan error
	events chan certs.Event
	bind   *testpeer.BIND // bindDNS
}

type acmeMode int

const (
	privateListeners acmeMode = iota // private http + https on pebble's ports
	tlsOnly                          // private https only: TLS-ALPN-01 is the only challenge
	throughRelay                     // public listeners behind labgate relay on pebble's ports
	dnsWildcard                      // DNS-01 through challtestsrv, private_wildcard
	bindDNS                          // dns.provider rfc2136 on a real BIND, pebble validating against it, private_wildcard
)

func newACMELab(t testing.TB, dir string, hosts ...string) *acmeLab {
	return newACMELabMode(t, privateListeners, dir, hosts...)
}

func newACMELabMode(t testing.TB, mode acmeMode, dir string, hosts ...string) *acmeLab {
	t.Helper()
	p := pebbleLab.Pebble(t)
	l := &acmeLab{t: t, p: p, mode: mode, dir: dir, file: filepath.Join(dir, "lab.yaml"),
		https: fmt.Sprintf("127.0.0.1:%d", p.TLSPort), http: fmt.Sprintf("127.0.0.1:%d", p.HTTPPort),
		roots: p.Roots(t), logs: &testpeer.Buffer{}, events: make(chan certs.Event, 100)}
	l.write(hosts...)
	return l
}

// write writes the file with one service per host; "pub:" before a host
// makes it public.
func (l *acmeLab) write(hosts ...string) {
	l.t.Helper()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello from", r.Host) }))
	l.t.Cleanup(backend.Close)
	s := fmt.Sprintf(`version: 1
domain: lab.test
state_dir: ./state
log: { level: debug }
tls:
  acme: { email: admin@lab.test, ca: %q, ca_roots: [%q] }
`, l.p.Directory, l.p.CAFile)
	switch l.mode {
	case privateListeners:
		s += fmt.Sprintf("gateway:\n  private: { https: [%q], http: [%q], allow: [127.0.0.0/8] }\n", l.https, l.http)
	case tlsOnly:
		s += fmt.Sprintf("gateway:\n  private: { https: [%q], allow: [127.0.0.0/8] }\n", l.https)
	case throughRelay:
		s += fmt.Sprintf("gateway:\n  public: { https: %q, http: %q, trusted_relays: [127.0.0.1/32] }\n", pubHTTPS, pubHTTP)
	case dnsWildcard:
		s += "  private_wildcard: true\n"
		s += fmt.Sprintf("dns:\n  provider: { type: rfc2136, server: \"127.0.0.1:53\", tsig_name: lab, tsig_secret: c2VjcmV0 }\n  resolvers: [%q]\n", l.p.DNS)
		s += fmt.Sprintf("gateway:\n  private: { https: [%q], allow: [127.0.0.0/8] }\n", l.https)
	case bindDNS:
		b := l.bind
		s += "  private_wildcard: true\n"
		s += "relay: { public_ips: [203.0.113.7], gateway: 127.0.0.11 }\n"
		s += fmt.Sprintf("dns:\n  provider: { type: rfc2136, server: %q, tsig_name: %q, tsig_secret: %q }\n  owner: labtest\n  interval: 1h\n  resolvers: [%q]\n",
			b.Addr, b.KeyName, b.Secret, b.Addr)
		s += fmt.Sprintf("gateway:\n  private: { https: [%q], allow: [127.0.0.0/8] }\n", l.https)
	}
	s += fmt.Sprintf("  admin: %q\n  limits: { shutdown_grace: 1s }\nservices:\n", admin)
	for _, h := range hosts {
		expose := "private"
		if name, ok := strings.CutPrefix(h, "pub:"); ok {
			h, expose = name, "public"
		}
		s += fmt.Sprintf("  - { name: %s, host: %s, expose: %s, backend: %q }\n", h, h, expose, backend.URL)
	}
	tmp := l.file + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
		l.t.Fatal(err)
	}
	if err := os.Rename(tmp, l.file); err != nil {
		l.t.Fatal(err)
	}
}

func (l *acmeLab) start() {
	l.t.Helper()
	opts := Options{
		Load:       func() (*config.Config, error) { return config.Load(l.file, config.Options{}) },
		Watch:      l.file,
		Stderr:     l.logs,
		CertEvents: func(e certs.Event) { l.events <- e },
	}
	if l.mode == dnsWildcard {
		opts.ChallengeDNS = func(*config.Config) (certs.ChallengeDNS, error) {
			return l.p, nil // the test's provider: challtestsrv, pebble's DNS server
		}
	}
	l.d, l.cancel, l.done = runDaemon(l.t, opts, l.logs, 10*time.Second)
	l.t.Cleanup(l.stop)
	if l.mode == throughRelay {
		ro := relay.Options{
			Routes: []relay.Route{
				{Name: "https", Proto: "tcp", Listen: l.https, Target: l.d.Addr(pubHTTPS).String(), PeekTLS: true},
				{Name: "http", Proto: "tcp", Listen: l.http, Target: l.d.Addr(pubHTTP).String()},
			},
			ProbeInterval: -1,
		}
		t := l.t.(*testing.T)
		r := runRelay(t, RelayOptions{
			Load:   func() (RelaySetup, error) { return RelaySetup{Relay: ro}, nil },
			Stderr: l.logs,
		})
		waitFor(t, "relay listening", func() bool { return r.Addr("https") != nil && r.Addr("http") != nil })
	}
}

func (l *acmeLab) stop() {
	if l.cancel == nil {
		return
	}
	stopDaemon(l.t, l.cancel, l.done, l.logs)
	l.cancel = nil
	if l.t.Failed() {
		l.t.Logf("pebble logs:\n%s", l.p.Log())
	}
}

// client connects to the gateway's HTTPS listener whatever the name, and
// trusts pebble's root only.
func (l *acmeLab) client() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", l.https)
		},
		TLSClientConfig:   &tls.Config{RootCAs: l.roots},
		DisableKeepAlives: true,
	}}
}

// served waits until https://host/ answers 200 through the gateway with a
// certificate verified against pebble's root, and returns that certificate.
func (l *acmeLab) served(host string) *x509.Certificate {
	l.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := l.client().Get("https://" + host + ".lab.test/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return resp.TLS.PeerCertificates[0]
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("%s.lab.test not served with a verified certificate: %v", host, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestACMEServe: serve obtains certificates from the ACME CA over the
// gateway's own listeners, serves them, obtains only the new one when a
// host is added, and after a restart serves them from state_dir without a
// request to the CA.
func TestACMEServe(t *testing.T) {
	dir := t.TempDir()
	l := newACMELab(t, dir, "www")
	l.start()
	orders := len(l.p.Orders())
	www := l.served("www")
	if got := www.DNSNames; len(got) != 1 || got[0] != "www.lab.test" {
		t.Errorf("www certificate names %v", got)
	}

	// Plain HTTP still redirects (the challenge hook lets other requests through).
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 5 * time.Second}
	req, _ := http.NewRequest("GET", "http://"+l.http+"/x", nil)
	req.Host = "www.lab.test"
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusPermanentRedirect {
		t.Errorf("plain HTTP: %v %v, want 308", resp, err)
	} else {
		resp.Body.Close()
	}

	// A new host: its certificate is obtained, www keeps its own.
	l.write("www", "blog")
	blog := l.served("blog")
	if got := blog.DNSNames; len(got) != 1 || got[0] != "blog.lab.test" {
		t.Errorf("blog certificate names %v", got)
	}
	if again := l.served("www"); !again.Equal(www) {
		t.Error("www got a new certificate on reload")
	}
	if got := len(l.p.Orders()) - orders; got != 2 {
		t.Errorf("%d orders, want 2 (www, then blog alone)", got)
	}
	// A reload with the same names asks the CA for nothing.
	requests := l.p.Requests()
	gen := l.d.generation()
	l.write("blog", "www")
	waitFor(t, "the reload with the same names", func() bool { return l.d.generation() > gen })
	l.served("www")
	if got := l.p.Requests() - requests; got != 0 {
		t.Errorf("a reload with the same names made %d request(s) to the CA", got)
	}
	// A removed host is no longer served, nor exported.
	l.write("www")
	waitFor(t, "blog removed", func() bool {
		_, err := tls.Dial("tcp", l.https, &tls.Config{ServerName: "blog.lab.test", RootCAs: l.roots})
		return err != nil
	})
	if m := scrape(t, l.d.adminAddr()); strings.Contains(m, `name="blog.lab.test"`) || !strings.Contains(m, `name="www.lab.test"`) {
		t.Errorf("expiry metrics after removing blog:\n%s", grep(m, "labgate_cert_expiry"))
	}
	// Back again: served from storage, no new order.
	before := len(l.p.Orders())
	l.write("www", "blog")
	if got := l.served("blog"); !got.Equal(blog) {
		t.Error("blog: a different certificate after being removed and added back")
	}
	if got := len(l.p.Orders()) - before; got != 0 {
		t.Errorf("adding blog back made %d order(s)", got)
	}
	l.stop()

	// Restart: a new daemon on the same state_dir.
	requests = l.p.Requests()
	l2 := newACMELab(t, dir, "www", "blog")
	l2.start()
	if got := l2.served("www"); !got.Equal(www) {
		t.Error("www: a different certificate after the restart")
	}
	if got := l2.served("blog"); !got.Equal(blog) {
		t.Error("blog: a different certificate after the restart")
	}
	if got := l.p.Requests() - requests; got != 0 {
		t.Errorf("the restart made %d request(s) to the CA, want none", got)
	}
	if strings.Contains(l2.logs.String(), "certificate obtained") {
		t.Error("the restart obtained a certificate")
	}
	// The expiry of what is served is exported, also after a restart.
	m := scrape(t, l2.d.adminAddr())
	for host, leaf := range map[string]*x509.Certificate{"www": www, "blog": blog} {
		want := fmt.Sprintf(`labgate_cert_expiry_timestamp_seconds{name="%s.lab.test"} %s`, host, strconv.FormatFloat(float64(leaf.NotAfter.Unix()), 'g', -1, 64))
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grep(m, "labgate_cert"))
		}
	}
}

// adminAddr is the bound admin address.
func (d *Daemon) adminAddr() string { return d.Addr(admin).String() }

// TestACMEChallengesThroughGateway obtains a certificate with each
// challenge alone, answered by the gateway: TLS-ALPN-01 on its HTTPS
// listener; HTTP-01 and TLS-ALPN-01 through labgate's relay to the public
// listeners (PROXY v2), as the CA reaches a public service in production.
func TestACMEChallengesThroughGateway(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode acmeMode
		host string
	}{
		{"tls-alpn-01 private", tlsOnly, "tls"},
		{"through the relay", throughRelay, "pub:www"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newACMELabMode(t, tc.mode, t.TempDir(), tc.host)
			l.start()
			host := strings.TrimPrefix(tc.host, "pub:")
			leaf := l.served(host)
			if got := leaf.DNSNames; len(got) != 1 || got[0] != host+".lab.test" {
				t.Errorf("certificate names %v", got)
			}
			if len(leaf.OCSPServer) == 0 {
				t.Error("the certificate names no OCSP responder: stapling was not exercised")
			}
			select {
			case e := <-l.events:
				if e.Kind != certs.Obtained || e.Name != host+".lab.test" {
					t.Errorf("event %+v", e)
				}
			case <-time.After(5 * time.Second):
				t.Error("no certificate event")
			}
			if tc.mode == tlsOnly && !strings.Contains(l.logs.String(), "challenge=tls-alpn-01") {
				t.Error("the gateway served no TLS-ALPN-01 challenge certificate")
			}
			if tc.mode == throughRelay {
				// The CA's validation reached the gateway through the relay.
				if !strings.Contains(l.logs.String(), "challenge=tls-alpn-01") && !strings.Contains(l.p.Log(), "validate w/ HTTP: http://www.lab.test") {
					t.Error("neither challenge was answered")
				}
				// Nothing but the relay connected to the public listeners.
				if strings.Contains(l.logs.String(), `msg="connection refused"`) {
					t.Errorf("a connection without PROXY header reached a public listener:\n%s", grep(l.logs.String(), `msg="connection refused"`))
				}
			}
		})
	}
}

// TestACMEDNS01Wildcard: with a DNS provider the private services share one
// *.lab.test certificate obtained over DNS-01; a public service gets its own.
func TestACMEDNS01Wildcard(t *testing.T) {
	l := newACMELabMode(t, dnsWildcard, t.TempDir(), "vault", "git", "pub:www")
	orders := len(l.p.Orders())
	l.start()
	for _, h := range []string{"vault", "git"} {
		if got := l.served(h).DNSNames; len(got) != 1 || got[0] != "*.lab.test" {
			t.Errorf("%s: certificate names %v, want the wildcard", h, got)
		}
	}
	// Until its own certificate arrives www may be served the (valid) wildcard.
	waitFor(t, "www's own certificate", func() bool {
		got := l.served("www").DNSNames
		return len(got) == 1 && got[0] == "www.lab.test"
	})
	if got := len(l.p.Orders()) - orders; got != 2 {
		t.Errorf("%d orders, want 2 (the wildcard and www)", got)
	}
	for _, n := range []string{"_acme-challenge.lab.test", "_acme-challenge.www.lab.test"} {
		if v := l.p.TXT(n); len(v) != 0 {
			t.Errorf("TXT values left at %s: %q", n, v)
		}
	}
}

// TestPlanCertificates: the dry run reads storage only.
func TestPlanCertificates(t *testing.T) {
	dir := t.TempDir()
	l := newACMELab(t, dir, "plan")
	cfg, err := config.Load(l.file, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := PlanCertificates(cfg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(plan) != 1 || plan[0].Name != "plan.lab.test" || plan[0].Action != certs.PlanObtain {
		t.Fatalf("plan before serving = %+v, want obtain plan.lab.test", plan)
	}
	l.start()
	leaf := l.served("plan")
	l.stop()
	plan, err = PlanCertificates(cfg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(plan) != 1 || plan[0].Action != certs.PlanKeep || !plan[0].Expiry.Equal(leaf.NotAfter) {
		t.Errorf("plan after serving = %+v, want ok until %s", plan, leaf.NotAfter)
	}
	// Two thirds of its life later it is due.
	later := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) * 3 / 4)
	plan, _ = PlanCertificates(cfg, later)
	if len(plan) != 1 || plan[0].Action != certs.PlanRenew {
		t.Errorf("plan at %s = %+v, want renew", later, plan)
	}
}

// BenchmarkTimeToNewService measures, per new service, the time from
// writing it into the file of a running gateway to a client getting 200
// over HTTPS with a certificate that verifies against pebble's root
// (HTTP-01 or TLS-ALPN-01 on the gateway's listeners; the file watcher's
// reaction included). Run it with bench/acme.sh.
func BenchmarkTimeToNewService(b *testing.B) {
	l := newACMELab(b, b.TempDir(), "first")
	l.start()
	l.served("first")
	hosts := []string{"first"}
	var times []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		hosts = append(hosts, fmt.Sprintf("svc%d", i))
		start := time.Now()
		l.write(hosts...)
		l.served(hosts[len(hosts)-1])
		times = append(times, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Milliseconds()), "median-ms")
	b.ReportMetric(float64(times[len(times)-1].Milliseconds()), "max-ms")
}
