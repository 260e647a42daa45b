package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/labgate/labgate/internal/testacme"
	"github.com/labgate/labgate/internal/testpeer"
)

// pebbleLab is one pebble (Debian's) for the whole package.
var pebbleLab testacme.Shared

// acmeEnv is an ACME source against pebble, serving on the ports pebble
// validates: plain HTTP (HTTP-01) and TLS (TLS-ALPN-01, and the served
// certificates).
type acmeEnv struct {
	t       *testing.T
	p       *testacme.Pebble
	a       *ACME
	src     atomic.Pointer[Source]
	tlsAddr string
	logs    *testpeer.Buffer
	reg     *prometheus.Registry
	close   func()

	mu     sync.Mutex
	events []Event
	notify chan struct{}
}

type challenge int

const (
	http01 challenge = 1 << iota
	tlsALPN01
	dns01
	unanswered // HTTP-01 enabled, but the HTTP server does not answer it
)

func newACMEEnv(t *testing.T, p *testacme.Pebble, stateDir string, ch challenge, opts ...func(*ACMEOptions)) *acmeEnv {
	t.Helper()
	e := &acmeEnv{t: t, p: p, logs: &testpeer.Buffer{}, notify: make(chan struct{}, 100), reg: prometheus.NewRegistry()}
	httpLn, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p.HTTPPort))
	if err != nil {
		t.Fatal(err)
	}
	tcpLn, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p.TLSPort))
	if err != nil {
		t.Fatal(err)
	}
	e.tlsAddr = tcpLn.Addr().String()
	o := ACMEOptions{
		StateDir:  stateDir,
		Email:     "admin@lab.test",
		Directory: p.Directory,
		CARoots:   []string{p.CAFile},
		Log:       slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics:   NewMetrics(e.reg),
		OnEvent: func(ev Event) {
			e.mu.Lock()
			e.events = append(e.events, ev)
			e.mu.Unlock()
			e.notify <- struct{}{}
		},
	}
	if ch&(http01|unanswered) != 0 {
		o.HTTP01 = true
	}
	if ch&tlsALPN01 != 0 {
		o.TLSALPN01 = true
	}
	if ch&dns01 != 0 {
		o.DNS, o.Resolvers = p, []string{p.DNS}
	}
	for _, f := range opts {
		f(&o)
	}
	e.a, err = NewACME(o)
	if err != nil {
		t.Fatal(err)
	}
	notFound := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "not a challenge", http.StatusNotFound) })
	httpSrv := &http.Server{Handler: e.a.HTTPHandler(notFound), ReadHeaderTimeout: 5 * time.Second}
	if ch&unanswered != 0 {
		httpSrv.Handler = notFound
	}
	tlsSrv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "served ", r.Host) }),
		TLSConfig: &tls.Config{
			GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) { return (*e.src.Load()).GetCertificate(h) },
			NextProtos:     []string{"h2", "http/1.1", ACMETLS1},
		},
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = httpSrv.Serve(httpLn) }()
	go func() { _ = tlsSrv.Serve(tls.NewListener(tcpLn, tlsSrv.TLSConfig)) }()
	e.close = func() {
		httpSrv.Close()
		tlsSrv.Close()
		e.a.Close()
	}
	t.Cleanup(func() {
		e.close()
		if t.Failed() {
			t.Logf("labgate logs:\n%s", e.logs)
			t.Logf("pebble logs:\n%s", p.Log())
		}
	})
	return e
}

func (e *acmeEnv) manage(names ...string) {
	src := e.a.Manage(names)
	e.src.Store(&src)
}

// waitEvents waits until n events of kind arrived and returns all events.
func (e *acmeEnv) waitEvents(kind EventKind, n int) []Event {
	e.t.Helper()
	deadline := time.After(90 * time.Second)
	for {
		e.mu.Lock()
		evs := slices.Clone(e.events)
		e.mu.Unlock()
		count := 0
		for _, ev := range evs {
			if ev.Kind == Failed {
				e.t.Errorf("failed: %s: %v", ev.Name, ev.Err)
			}
			if ev.Kind == kind {
				count++
			}
		}
		if count >= n {
			return evs
		}
		select {
		case <-e.notify:
		case <-deadline:
			e.t.Fatalf("%d %s event(s) after 90s, want %d: %+v", count, kind, n, evs)
		}
	}
}

// handshake connects to the test TLS server with server name sni, verifying
// against roots, and returns the leaf it served.
func (e *acmeEnv) handshake(sni string, roots *x509.CertPool) (*x509.Certificate, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.tlsAddr,
		&tls.Config{ServerName: sni, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// waitServed waits until sni gets a certificate verified against roots.
func (e *acmeEnv) waitServed(sni string, roots *x509.CertPool) *x509.Certificate {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		leaf, err := e.handshake(sni, roots)
		if err == nil {
			return leaf
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: no verified certificate: %v", sni, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestACMEChallenges(t *testing.T) {
	for _, tc := range []struct {
		name string
		ch   challenge
		host string
	}{
		{"http-01", http01, "www.lab.test"},
		{"tls-alpn-01", tlsALPN01, "tls.lab.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := pebbleLab.Pebble(t)
			e := newACMEEnv(t, p, t.TempDir(), tc.ch)
			before := len(p.Orders())
			e.manage(tc.host)
			evs := e.waitEvents(Obtained, 1)
			if evs[0].Name != tc.host || evs[0].Expiry.IsZero() {
				t.Errorf("event = %+v", evs[0])
			}
			leaf := e.waitServed(tc.host, p.Roots(t))
			if !slices.Equal(leaf.DNSNames, []string{tc.host}) {
				t.Errorf("served certificate names %v, want [%s]", leaf.DNSNames, tc.host)
			}
			if got := len(p.Orders()) - before; got != 1 {
				t.Errorf("%d orders, want 1", got)
			}
			// The challenge used is the only one enabled: the logs say which was answered.
			if tc.ch == http01 && !strings.Contains(p.Log(), "validate w/ HTTP: http://"+tc.host) {
				t.Error("pebble did not validate over HTTP-01")
			}
			if tc.ch == tlsALPN01 && !strings.Contains(e.logs.String(), "challenge=tls-alpn-01") {
				t.Error("no TLS-ALPN-01 challenge certificate was served")
			}

			// Names that are not configured fail the handshake, as with the internal CA.
			if _, err := e.handshake("other.lab.test", nil); err == nil {
				t.Error("an unconfigured name got a certificate")
			}
			// Metrics: one obtained, the expiry of the name.
			if got := testutil.ToFloat64(e.a.opts.Metrics.events.WithLabelValues("obtained")); got != 1 {
				t.Errorf("labgate_cert_events_total{event=obtained} = %v", got)
			}
			if got := testutil.ToFloat64(e.a.opts.Metrics.expiry.WithLabelValues(tc.host)); got != float64(leaf.NotAfter.Unix()) {
				t.Errorf("labgate_cert_expiry_timestamp_seconds{name=%q} = %v, want %d", tc.host, got, leaf.NotAfter.Unix())
			}
		})
	}
}

// TestACMERestartMakesNoRequest: a second source on the same state
// directory serves the stored certificate without a request to the CA.
func TestACMERestartMakesNoRequest(t *testing.T) {
	p := pebbleLab.Pebble(t)
	dir := t.TempDir()
	roots := p.Roots(t)
	e := newACMEEnv(t, p, dir, http01|tlsALPN01)
	e.manage("restart.lab.test")
	e.waitEvents(Obtained, 1)
	first := e.waitServed("restart.lab.test", roots)
	// A reload with the same names starts nothing new.
	e.manage("restart.lab.test")
	e.close()

	requests := p.Requests()
	e2 := newACMEEnv(t, p, dir, http01|tlsALPN01)
	e2.manage("restart.lab.test")
	second := e2.waitServed("restart.lab.test", roots)
	if !first.Equal(second) {
		t.Errorf("after the restart a different certificate is served (serial %v, was %v)", second.SerialNumber, first.SerialNumber)
	}
	if got := p.Requests() - requests; got != 0 {
		t.Errorf("the restart made %d request(s) to the CA, want none", got)
	}
	e2.mu.Lock()
	defer e2.mu.Unlock()
	if len(e2.events) != 0 {
		t.Errorf("events after the restart: %+v", e2.events)
	}
	if got := testutil.ToFloat64(e2.a.opts.Metrics.expiry.WithLabelValues("restart.lab.test")); got != float64(first.NotAfter.Unix()) {
		t.Errorf("expiry metric after the restart = %v, want %d", got, first.NotAfter.Unix())
	}
}

// TestACMEDNS01Wildcard obtains an apex and a wildcard certificate at once:
// both validate at _acme-challenge.lab.test, so the provider must add
// values next to each other and delete exactly its own.
func TestACMEDNS01Wildcard(t *testing.T) {
	p := pebbleLab.Pebble(t)
	e := newACMEEnv(t, p, t.TempDir(), dns01)
	// A value someone else keeps at the same name must survive.
	if err := p.SetTXT(context.Background(), "_acme-challenge.dns.test.", "not-ours"); err != nil {
		t.Fatal(err)
	}
	e.manage("dns.test", "*.dns.test")
	evs := e.waitEvents(Obtained, 2)
	var names []string
	for _, ev := range evs {
		names = append(names, ev.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"*.dns.test", "dns.test"}) {
		t.Errorf("obtained %v", names)
	}
	roots := p.Roots(t)
	if leaf := e.waitServed("vault.dns.test", roots); !slices.Equal(leaf.DNSNames, []string{"*.dns.test"}) {
		t.Errorf("vault.dns.test got %v, want the wildcard", leaf.DNSNames)
	}
	if leaf := e.waitServed("dns.test", roots); !slices.Equal(leaf.DNSNames, []string{"dns.test"}) {
		t.Errorf("dns.test got %v", leaf.DNSNames)
	}
	if _, err := e.handshake("a.b.dns.test", roots); err == nil {
		t.Error("a name two labels below got the wildcard")
	}
	if got := p.TXT("_acme-challenge.dns.test"); !slices.Equal(got, []string{"not-ours"}) {
		t.Errorf("TXT values left at _acme-challenge.dns.test: %q, want only the foreign one", got)
	}
	_ = p.DeleteTXT(context.Background(), "_acme-challenge.dns.test.", "not-ours")
}

// TestACMEFailureEvent: a name the CA cannot validate produces a failed
// event (and keeps being retried in the background).
func TestACMEFailureEvent(t *testing.T) {
	p := pebbleLab.Pebble(t)
	// HTTP-01 only, but nothing answers on pebble's HTTP port.
	e := newACMEEnv(t, p, t.TempDir(), unanswered)
	e.manage("broken.lab.test")
	evs := func() []Event {
		deadline := time.After(90 * time.Second)
		for {
			e.mu.Lock()
			evs := slices.Clone(e.events)
			e.mu.Unlock()
			if len(evs) > 0 {
				return evs
			}
			select {
			case <-e.notify:
			case <-deadline:
				t.Fatal("no event after 90s")
			}
		}
	}()
	if evs[0].Kind != Failed || evs[0].Name != "broken.lab.test" || evs[0].Err == nil {
		t.Fatalf("event = %+v, want failed with an error", evs[0])
	}
	if got := testutil.ToFloat64(e.a.opts.Metrics.events.WithLabelValues("failed")); got < 1 {
		t.Errorf("labgate_cert_events_total{event=failed} = %v", got)
	}
	if _, err := e.handshake("broken.lab.test", nil); err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("handshake without a certificate: %v", err)
	}
}

// blockingDNS presents DNS-01 records through pebble's, but holds every
// SetTXT until its context ends, and says when that happened.
type blockingDNS struct {
	*testacme.Pebble
	presented chan string
	cancelled chan string
}

func (b *blockingDNS) SetTXT(ctx context.Context, fqdn, value string) error {
	b.presented <- fqdn
	<-ctx.Done()
	b.cancelled <- fqdn
	return ctx.Err()
}

// TestACMERemovedNameStopsObtaining: a name removed from the file while its
// certificate is being obtained (or retried after failures) is no longer
// worked on: certmagic's retries would otherwise go on against the CA for
// days for a name nobody serves.
func TestACMERemovedNameStopsObtaining(t *testing.T) {
	p := pebbleLab.Pebble(t)
	bd := &blockingDNS{Pebble: p, presented: make(chan string, 10), cancelled: make(chan string, 10)}
	e := newACMEEnv(t, p, t.TempDir(), dns01, func(o *ACMEOptions) { o.DNS = bd })
	e.manage("typo.dns.test", "kept.dns.test")
	for range 2 {
		select {
		case <-bd.presented:
		case <-time.After(90 * time.Second):
			t.Fatal("no DNS-01 record presented after 90s")
		}
	}
	e.manage("kept.dns.test")
	select {
	case n := <-bd.cancelled:
		if n != "_acme-challenge.typo.dns.test." {
			t.Errorf("cancelled the challenge of %s, want only typo.dns.test's", n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the obtain of a name no longer managed still runs 30s later")
	}
	select {
	case n := <-bd.cancelled:
		t.Errorf("the challenge of %s was cancelled too; that name is still managed", n)
	default:
	}
}

// TestACMERemovedNameNoFailure: the obtain a removal cancels ends in
// certmagic's "cert_failed"; for a name no longer managed that is no
// failure to count or alert on.
func TestACMERemovedNameNoFailure(t *testing.T) {
	var got []Event
	reg := prometheus.NewRegistry()
	a, err := NewACME(ACMEOptions{StateDir: t.TempDir(), Directory: "https://acme.invalid/directory", Metrics: NewMetrics(reg),
		OnEvent: func(ev Event) { got = append(got, ev) }})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.mu.Lock()
	a.managed["kept.lab.test"] = func() {}
	a.mu.Unlock()
	for _, n := range []string{"gone.lab.test", "kept.lab.test"} {
		_ = a.onEvent(context.Background(), "cert_failed", map[string]any{"identifier": n, "renewal": false, "error": context.Canceled})
	}
	if len(got) != 1 || got[0].Name != "kept.lab.test" {
		t.Errorf("events %+v, want only kept.lab.test's failure", got)
	}
	if n := testutil.ToFloat64(a.opts.Metrics.events.WithLabelValues("failed")); n != 1 {
		t.Errorf("labgate_cert_events_total{event=failed} = %v, want 1", n)
	}
	// Nor once the source is closed (a reload with other ACME settings).
	a.Close()
	_ = a.onEvent(context.Background(), "cert_failed", map[string]any{"identifier": "kept.lab.test", "renewal": false, "error": context.Canceled})
	if len(got) != 1 {
		t.Errorf("events after Close: %+v", got)
	}
}
