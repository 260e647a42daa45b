package relay

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labgate/labgate/internal/testpeer"
)

// The relay in front of other vendors' PROXY receivers: each must take the
// client's address from labgate's v2 header.

// get sends one HTTP/1.1 request over a connection from src to addr.
func get(t *testing.T, src, addr string) string {
	t.Helper()
	c := dialFrom(t, src, addr)
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: interop.test\r\nConnection: close\r\n\r\n")
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestInteropHAProxyAcceptProxy(t *testing.T) {
	haproxy := testpeer.Need(t, "haproxy")
	backend := newXFFBackend(t)
	port := testpeer.FreePort(t, "127.0.0.81")
	front := "127.0.0.81:" + port
	cfg := fmt.Sprintf(`global
  log stderr format raw local0 warning
defaults
  mode http
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend f
  bind %s accept-proxy
  option forwardfor
  default_backend b
backend b
  server s %s
`, front, strings.TrimPrefix(backend, "http://"))
	file := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	testpeer.Start(t, haproxy, "-db", "-f", file)
	testpeer.WaitPort(t, front)

	r := startRelay(t, Options{Routes: []Route{{Name: "http", Proto: "tcp", Listen: "127.0.0.82:0", Target: front}}})
	resp := get(t, "127.0.0.83", r.Addr("http").String())
	if !strings.Contains(resp, "200 OK") || !strings.Contains(resp, "xff=127.0.0.83") {
		t.Fatalf("HAProxy behind labgate relay did not see the client 127.0.0.83:\n%s", resp)
	}
}

func TestInteropNginxProxyProtocol(t *testing.T) {
	nginx := testpeer.Need(t, "nginx")
	dir := t.TempDir()
	port := testpeer.FreePort(t, "127.0.0.84")
	listen := "127.0.0.84:" + port
	conf := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen %[2]s proxy_protocol;
    location / { return 200 "client=$proxy_protocol_addr\n"; }
  }
}
`, dir, listen)
	file := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	testpeer.Start(t, nginx, "-c", file, "-p", dir)
	testpeer.WaitPort(t, listen)

	r := startRelay(t, Options{Routes: []Route{{Name: "http", Proto: "tcp", Listen: "127.0.0.85:0", Target: listen}}})
	resp := get(t, "127.0.0.86", r.Addr("http").String())
	if !strings.Contains(resp, "200 OK") || !strings.Contains(resp, "client=127.0.0.86") {
		t.Fatalf("nginx behind labgate relay did not see the client 127.0.0.86:\n%s", resp)
	}
}

// newXFFBackend answers with the X-Forwarded-For it received.
func newXFFBackend(t *testing.T) string {
	t.Helper()
	ln := mustListen(t, "127.0.0.1:0")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "xff=%s\n", r.Header.Get("X-Forwarded-For"))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func mustListen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
