package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/labgate/labgate/internal/testpeer"
)

// TestHAProxyRelay puts a real HAProxy in the relay's place, as in the seed's
// homelab: mode tcp, send-proxy-v2, TLS passing through untouched. The
// backend must see the address the client connected to HAProxy from.
func TestHAProxyRelay(t *testing.T) {
	haproxy := testpeer.Need(t, "haproxy")
	l := startLab(t)
	front := "127.0.0.41:" + testpeer.FreePort(t, "127.0.0.41")
	frontHTTP := "127.0.0.41:" + testpeer.FreePort(t, "127.0.0.41")
	cfg := fmt.Sprintf(`global
  log stderr format raw local0 warning
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend https
  bind %s
  default_backend gateway_https
frontend http
  bind %s
  default_backend gateway_http
backend gateway_https
  server gw %s send-proxy-v2
backend gateway_http
  server gw %s send-proxy-v2
`, front, frontHTTP, l.addr(pubHTTPS), l.addr(pubHTTP))
	file := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	testpeer.Start(t, haproxy, "-db", "-f", file)
	testpeer.WaitPort(t, front)

	// The client connects to HAProxy from 127.0.0.77; only HAProxy (from
	// 127.0.0.1, the trusted relay) connects to the gateway.
	c := l.client(front, "127.0.0.77", "")
	code, s, body := get(t, c, "https://www.lab.test/through-haproxy")
	if code != 200 || s.Service != "www" {
		t.Fatalf("through HAProxy: %d %q", code, body)
	}
	if got := s.Header.Get("X-Forwarded-For"); got != "127.0.0.77" {
		t.Errorf("X-Forwarded-For = %q, want the client's own address 127.0.0.77", got)
	}
	if code, _, body := get(t, c, "https://vault.lab.test/"); code != 0 && code != 404 {
		t.Errorf("private service through HAProxy: %d %q", code, body)
	}
	code, _, _ = get(t, l.client(frontHTTP, "127.0.0.77", ""), "http://www.lab.test/")
	if code != 308 {
		t.Errorf("plain HTTP through HAProxy: %d, want 308", code)
	}
}
