package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/certs"
	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/testacme"
	"github.com/labgate/labgate/internal/testpeer"
)

// pebbleLab is one pebble for the package's ACME tests.
var pebbleLab testacme.Shared

func TestMain(m *testing.M) { os.Exit(pebbleLab.Run(m)) }

// acmeLab is `labgate serve` with tls.acme pointed at pebble, its private
// listeners on the ports pebble validates HTTP-01 and TLS-ALPN-01 on.
type acmeLab struct {
	t      *testing.T
	p      *testacme.Pebble
	dir    string
	file   string
	https  string
	http   string
	roots  *x509.CertPool
	d      *Daemon
	logs   *testpeer.Buffer
	cancel context.CancelFunc
	done   chan error
}

const acmeConfig = `version: 1
domain: lab.test
state_dir: ./state
log: { level: debug }
tls:
  acme: { email: admin@lab.test, ca: "%s", ca_roots: ["%s"] }
gateway:
  private:
    https: ["%s"]
    http: ["%s"]
    allow: [127.0.0.0/8]
  limits: { shutdown_grace: 1s }
services:
`

func newACMELab(t *testing.T, dir string, hosts ...string) *acmeLab {
	t.Helper()
	p := pebbleLab.Pebble(t)
	l := &acmeLab{t: t, p: p, dir: dir, file: filepath.Join(dir, "lab.yaml"),
		https: fmt.Sprintf("127.0.0.1:%d", p.TLSPort), http: fmt.Sprintf("127.0.0.1:%d", p.HTTPPort),
		roots: p.Roots(t), logs: &testpeer.Buffer{}}
	l.write(hosts...)
	return l
}

func (l *acmeLab) write(hosts ...string) {
	l.t.Helper()
	backend := newBackend(l.t, "backend")
	s := fmt.Sprintf(acmeConfig, l.p.Directory, l.p.CAFile, l.https, l.http)
	for _, h := range hosts {
		s += fmt.Sprintf("  - { name: %s, host: %s, backend: %q }\n", h, h, backend.URL)
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
	ready := make(chan struct{})
	l.d = New(Options{
		Load:   func() (*config.Config, error) { return config.Load(l.file, config.Options{}) },
		Watch:  l.file,
		Stderr: l.logs,
		Ready:  func(*Daemon) { close(ready) },
	})
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel, l.done = cancel, make(chan error, 1)
	go func() { l.done <- l.d.Run(ctx) }()
	select {
	case <-ready:
	case err := <-l.done:
		l.t.Fatalf("daemon stopped: %v\n%s", err, l.logs)
	case <-time.After(10 * time.Second):
		l.t.Fatalf("daemon did not start\n%s", l.logs)
	}
	l.t.Cleanup(l.stop)
}

func (l *acmeLab) stop() {
	if l.cancel == nil {
		return
	}
	l.cancel()
	l.cancel = nil
	select {
	case err := <-l.done:
		if err != nil {
			l.t.Errorf("daemon: %v", err)
		}
	case <-time.After(15 * time.Second):
		l.t.Errorf("daemon did not stop")
	}
	if l.t.Failed() {
		l.t.Logf("daemon logs:\n%s", l.logs)
		l.t.Logf("pebble logs:\n%s", l.p.Log())
	}
}

// served waits until https://host/ answers 200 through the gateway with a
// certificate verified against pebble's root, and returns that certificate.
func (l *acmeLab) served(host string) *x509.Certificate {
	l.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var leaf *x509.Certificate
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", l.https)
			},
			TLSClientConfig: &tls.Config{RootCAs: l.roots, VerifyConnection: func(cs tls.ConnectionState) error {
				leaf = cs.PeerCertificates[0]
				return nil
			}},
			DisableKeepAlives: true,
		}}
		resp, err := c.Get("https://" + host + ".lab.test/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return leaf
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
	l.write("blog", "www")
	time.Sleep(500 * time.Millisecond) // let the watcher see it; nothing may happen
	l.served("www")
	if got := l.p.Requests() - requests; got != 0 {
		t.Errorf("a reload with the same names made %d request(s) to the CA", got)
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
