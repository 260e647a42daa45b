package health

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/testpeer"
)

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// verdict is how a test reads a check's error: "ok", "warn: …" or "fail: …".
func verdict(err error) string {
	var w *Warning
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &w):
		return "warn: " + err.Error()
	default:
		return "fail: " + err.Error()
	}
}

func TestHTTPCheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Write([]byte(`{"status":"ok","db":{"up":true,"replicas":[1,2]}}`))
		case "/slow":
			time.Sleep(50 * time.Millisecond)
			w.Write([]byte("ok"))
		case "/host":
			w.Write([]byte("host=" + r.Host + " ua=" + r.UserAgent()))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	dead := "http://" + closedAddr(t)
	tests := []struct {
		name string
		c    *HTTPCheck
		want string
	}{
		{"2xx", &HTTPCheck{URLs: []*url.URL{mustURL(t, srv.URL+"/ok")}}, "ok"},
		{"404", &HTTPCheck{URLs: []*url.URL{mustURL(t, srv.URL+"/nope")}}, "fail: status 404 (want 2xx or 3xx)"},
		{"status expected", &HTTPCheck{URLs: []*url.URL{mustURL(t, srv.URL+"/nope")}, Status: 404}, "ok"},
		{"body", &HTTPCheck{URLs: []*url.URL{mustURL(t, srv.URL+"/ok")}, Body: `"ok"`}, "ok"},
		{"body missing", &HTTPCheck{URLs: []*url.URL{mustURL(t, srv.URL+"/ok")}, Body: "healthy"}, `fail: the answer does not contain "healthy"`},
		{"json field", &HTTPCheck{URLs: []*url.URL{mustURL(t, srv.URL+"/ok")}, JSONField: "db.up", JSONEquals: "true"}, "ok"},
		{"json array", &HTTPCheck{URLs: []*url.URL{mustURL(t, srv.URL+"/ok")}, JSONField: "db.replicas.1", JSONEquals: "2"}, "ok"},
		{"json differs", &HTTPCheck{URLs: []*url.URL{mustURL(t, srv.URL+"/ok")}, JSONField: "status", JSONEquals: "green"}, `fail: JSON field status is "ok" (want "green")`},
		{"json missing", &HTTPCheck{URLs: []*url.URL{mustURL(t, srv.URL+"/ok")}, JSONField: "db.down", JSONEquals: "x"}, "fail: JSON field db.down is missing"},
		{"not json", &HTTPCheck{URLs: []*url.URL{mustURL(t, srv.URL+"/slow")}, JSONField: "a", JSONEquals: "b"}, "fail: the answer is not JSON: invalid character 'o' looking for beginning of value"},
		{"slow", &HTTPCheck{URLs: []*url.URL{mustURL(t, srv.URL+"/slow")}, MaxLatency: time.Millisecond}, "warn: slow"},
		{"host header", &HTTPCheck{URLs: []*url.URL{mustURL(t, srv.URL+"/host")}, Host: "vault.lab.test", Body: "host=vault.lab.test ua=labgate-health"}, "ok"},
		{"refused", &HTTPCheck{URLs: []*url.URL{mustURL(t, dead+"/ok")}}, "fail: connection refused"},
		{"one of two backends", &HTTPCheck{URLs: []*url.URL{mustURL(t, srv.URL+"/ok"), mustURL(t, dead+"/ok")}}, "warn: 1 of 2 backends failing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := verdict(tt.c.Check(context.Background()))
			if !strings.HasPrefix(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// closedAddr is a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestTCPCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if got := verdict((&TCPCheck{Addr: ln.Addr().String()}).Check(context.Background())); got != "ok" {
		t.Errorf("listening: %s", got)
	}
	if got := verdict((&TCPCheck{Addr: closedAddr(t)}).Check(context.Background())); got != "fail: connection refused" {
		t.Errorf("closed: %s", got)
	}
}

func TestTLSCheck(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	cert := srv.Certificate()
	addr := srv.Listener.Addr().String()
	at := func(d time.Duration) func() time.Time { return func() time.Time { return cert.NotAfter.Add(-d) } }
	tests := []struct {
		name string
		c    *TLSCheck
		want string
	}{
		{"valid", &TLSCheck{Addr: addr, ServerName: "example.com", MinDaysLeft: 14, Now: at(100 * 24 * time.Hour)}, "ok"},
		{"expiring", &TLSCheck{Addr: addr, ServerName: "example.com", MinDaysLeft: 14, Now: at(3 * 24 * time.Hour)}, "warn: certificate expires in 3 days"},
		{"expired", &TLSCheck{Addr: addr, ServerName: "example.com", MinDaysLeft: 14, Now: at(-time.Hour)}, "fail: certificate expired on"},
		{"wrong name", &TLSCheck{Addr: addr, ServerName: "vault.lab.test", Now: at(100 * 24 * time.Hour)}, "fail: the certificate is not for vault.lab.test"},
		{"not TLS", &TLSCheck{Addr: closedAddr(t)}, "fail: connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := verdict(tt.c.Check(context.Background()))
			if !strings.HasPrefix(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDNSCheck(t *testing.T) {
	relay := netip.MustParseAddr("203.0.113.7")
	bind := testpeer.StartBIND(t, "lab.test", "www IN A 203.0.113.7", "old IN A 198.51.100.1", "home IN A 192.168.1.20")
	r := Resolver([]string{bind.Addr})
	tests := []struct {
		name string
		c    *DNSCheck
		want string
	}{
		{"expected", &DNSCheck{Host: "www.lab.test", Expect: []netip.Addr{relay}, Resolver: r}, "ok"},
		{"any answer", &DNSCheck{Host: "home.lab.test", Resolver: r}, "ok"},
		{"elsewhere", &DNSCheck{Host: "old.lab.test", Expect: []netip.Addr{relay}, Resolver: r}, "fail: old.lab.test resolves to [198.51.100.1], not 203.0.113.7"},
		{"no such name", &DNSCheck{Host: "gone.lab.test", Resolver: r}, "fail: gone.lab.test: no such host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if got := verdict(tt.c.Check(ctx)); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
