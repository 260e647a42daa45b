package daemon

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/proxyproto"
)

// tlsBackend is a backend that terminates TLS itself, with its own
// self-signed certificate for names, optionally behind a PROXY header. It
// answers every request with its name and the client address it saw.
type tlsBackend struct {
	addr string
	pool *x509.CertPool // trusts the backend's certificate only
}

func newTLSBackend(t *testing.T, name string, proxy bool, names ...string) *tlsBackend {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	ln, err := net.Listen("tcp", "127.0.0.41:0")
	if err != nil {
		t.Fatal(err)
	}
	var inner net.Listener = ln
	if proxy {
		inner = proxyListener{ln}
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s saw %s over %s", name, r.RemoteAddr, r.TLS.ServerName)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
	}
	go srv.ServeTLS(inner, "", "")
	t.Cleanup(func() { srv.Close() })
	return &tlsBackend{addr: ln.Addr().String(), pool: pool}
}

// proxyListener reads a PROXY header (v1 or v2) on each connection.
type proxyListener struct{ net.Listener }

func (l proxyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return proxyproto.NewConn(c, 5*time.Second, nil), nil
}

// ptClient is an HTTPS client that goes through the public listener with a
// PROXY v1 header from the trusted relay (claiming 203.0.113.9) and trusts
// only roots.
func ptClient(addr string, roots *x509.CertPool, proxied bool) *http.Client {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil || !proxied {
			return c, err
		}
		dst := c.RemoteAddr().(*net.TCPAddr)
		_, err = fmt.Fprintf(c, "PROXY TCP4 203.0.113.9 %s 40000 %d\r\n", dst.IP, dst.Port)
		return c, err
	}
	return &http.Client{
		Transport: &http.Transport{DialContext: dial, TLSClientConfig: &tls.Config{RootCAs: roots},
			ForceAttemptHTTP2: true, DisableKeepAlives: true},
		Timeout: 10 * time.Second,
	}
}

func fetch(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestTLSPassthrough(t *testing.T) {
	pt := newTLSBackend(t, "pt", false, "pt.lab.test")
	ptv2 := newTLSBackend(t, "ptv2", true, "v2.lab.test")
	secret := newTLSBackend(t, "secret", false, "secret.lab.test")
	wild := newTLSBackend(t, "wild", false, "*.apps.lab.test")
	l := startLabWith(t, false, fmt.Sprintf(`  - { name: pt, host: pt, expose: public, passthrough: { backend: %q } }
  - { name: ptv2, host: v2, expose: public, passthrough: { backend: %q, proxy_protocol: v2 } }
  - { name: secret, host: secret, passthrough: { backend: %q } }
  - { name: apps, host: "*.apps.lab.test", expose: public, passthrough: { backend: %q } }
`, pt.addr, ptv2.addr, secret.addr, wild.addr))
	pub, priv := l.addr(pubHTTPS), l.addr(privHTTPS)

	t.Run("public passthrough: the backend's certificate and answer", func(t *testing.T) {
		body, err := fetch(ptClient(pub, pt.pool, true), "https://pt.lab.test/")
		if err != nil || !strings.HasPrefix(body, "pt saw ") || !strings.HasSuffix(body, "over pt.lab.test") {
			t.Fatalf("body %q, err %v", body, err)
		}
		// Labgate's CA has no certificate for it.
		if _, err := fetch(ptClient(pub, l.root, true), "https://pt.lab.test/"); err == nil {
			t.Errorf("labgate's CA verified the passthrough host")
		}
	})
	t.Run("proxy_protocol v2: the backend sees the client", func(t *testing.T) {
		body, err := fetch(ptClient(pub, ptv2.pool, true), "https://v2.lab.test/")
		if err != nil || !strings.HasPrefix(body, "ptv2 saw 203.0.113.9:40000 ") {
			t.Fatalf("body %q, err %v", body, err)
		}
	})
	t.Run("wildcard host", func(t *testing.T) {
		body, err := fetch(ptClient(pub, wild.pool, true), "https://x.apps.lab.test/")
		if err != nil || !strings.HasPrefix(body, "wild saw ") {
			t.Fatalf("body %q, err %v", body, err)
		}
	})
	t.Run("other hosts: labgate's own TLS on the same listener", func(t *testing.T) {
		code, s, body := get(t, l.client(pub, "127.0.0.1", "203.0.113.9"), "https://www.lab.test/x")
		if code != 200 || s.Service != "www" {
			t.Fatalf("code %d, body %q", code, body)
		}
		code, s, body = get(t, l.client(priv, "", ""), "https://vault.lab.test/")
		if code != 200 || s.Service != "vault" {
			t.Fatalf("private: code %d, body %q", code, body)
		}
	})
	t.Run("a private passthrough service is not public", func(t *testing.T) {
		if body, err := fetch(ptClient(pub, secret.pool, true), "https://secret.lab.test/"); err == nil {
			t.Fatalf("reached through the public listener: %q", body)
		}
		body, err := fetch(ptClient(priv, secret.pool, false), "https://secret.lab.test/")
		if err != nil || !strings.HasPrefix(body, "secret saw 127.0.0.1:") {
			t.Fatalf("private listener: body %q, err %v", body, err)
		}
	})
	t.Run("plain HTTP for a passthrough host redirects to HTTPS", func(t *testing.T) {
		c := l.client(l.addr(pubHTTP), "127.0.0.1", "198.51.100.1")
		code, _, body := get(t, c, "http://pt.lab.test/x")
		if code != http.StatusPermanentRedirect {
			t.Fatalf("got %d %q, want 308", code, body)
		}
		if code, _, _ := get(t, c, "http://secret.lab.test/"); code != http.StatusNotFound {
			t.Errorf("a private passthrough host on the public HTTP listener: %d, want 404", code)
		}
	})
	t.Run("logged like an l4 connection", func(t *testing.T) {
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(l.logs.String(), "service=ptv2") || !strings.Contains(l.logs.String(), "l4 connection") {
			if time.Now().After(deadline) {
				t.Fatalf("no l4 log line for ptv2")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func TestCertNamesSkipPassthrough(t *testing.T) {
	cfg := &config.Config{Services: []*config.Service{
		{Name: "www", Hosts: []string{"www.lab.test"}},
		{Name: "pt", Hosts: []string{"pt.lab.test"}, Passthrough: &config.Passthrough{Backend: "127.0.0.1:443"}},
	}}
	if got := certNames(cfg); len(got) != 1 || got[0] != "www.lab.test" {
		t.Errorf("certNames = %v, want [www.lab.test]", got)
	}
}
