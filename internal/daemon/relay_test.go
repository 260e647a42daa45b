package daemon

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/relay"
)

func TestRelayFromConfig(t *testing.T) {
	cfg, err := config.Parse("lab.yaml", []byte(`version: 1
domain: example.org
relay: { gateway: 100.101.102.103, listen: 203.0.113.7, admin: "127.0.0.1:9181" }
gateway:
  public: { https: "100.101.102.103:10443", http: "100.101.102.103:10080", trusted_relays: [100.90.0.1] }
  private: { https: ["100.101.102.103:443"] }
services:
  - { name: blog, host: blog, expose: public, backend: "http://192.168.1.21" }
  - name: mail
    expose: public
    tcp: [{ port: 25, backend: "192.168.1.30:25", proxy_protocol: v2 }]
  - name: wg
    expose: public
    udp: [{ port: 51820, backend: "192.168.1.31:51820" }]
  - name: ssh
    tcp: [{ port: 2222, backend: "192.168.1.32:22" }]
`), config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ro, admin, err := RelayFromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := []relay.Route{
		{Name: "http", Proto: "tcp", Listen: "203.0.113.7:80", Target: "100.101.102.103:10080"},
		{Name: "https", Proto: "tcp", Listen: "203.0.113.7:443", Target: "100.101.102.103:10443", PeekTLS: true},
		{Name: "mail/tcp/25", Proto: "tcp", Listen: "203.0.113.7:25", Target: "100.101.102.103:25"},
		{Name: "wg/udp/51820", Proto: "udp", Listen: "203.0.113.7:51820", Target: "100.101.102.103:51820"},
	}
	if diff := cmp.Diff(want, ro.Routes); diff != "" {
		t.Errorf("routes (-want +got), the private ssh port must not be relayed:\n%s", diff)
	}
	if diff := cmp.Diff([]string{"100.101.102.103:10080"}, ro.ProbeTargets); diff != "" {
		t.Errorf("probe targets (-want +got):\n%s", diff)
	}
	if admin != "127.0.0.1:9181" || ro.MaxConnsPerSource != 256 || ro.IdleTimeout != time.Hour {
		t.Errorf("admin %q, limits %+v", admin, ro)
	}
}

// TestRelayInFrontOfGateway runs labgate's own relay in front of the
// gateway: the backend must see the address the client connected to the
// relay from, and the relay must not decrypt (the certificate the client
// verifies is the gateway's).
func TestRelayInFrontOfGateway(t *testing.T) {
	l := startLab(t)
	ro := relay.Options{
		Routes: []relay.Route{
			{Name: "https", Proto: "tcp", Listen: "127.0.0.42:0", Target: l.addr(pubHTTPS), PeekTLS: true},
			{Name: "http", Proto: "tcp", Listen: "127.0.0.43:0", Target: l.addr(pubHTTP)},
		},
		ProbeInterval: -1,
	}
	ready := make(chan *Relay, 1)
	d := NewRelay(RelayOptions{
		Load:   func() (relay.Options, string, error) { return ro, "127.0.0.44:0", nil },
		Stderr: l.logs,
		Ready:  func(r *Relay) { ready <- r },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("relay stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("relay did not start")
	}
	waitFor(t, "relay listening", func() bool { return d.Addr("https") != nil })

	c := l.client(d.Addr("https").String(), "127.0.0.78", "")
	code, s, body := get(t, c, "https://www.lab.test/via-relay")
	if code != 200 || s.Service != "www" {
		t.Fatalf("through labgate relay: %d %q", code, body)
	}
	if got := s.Header.Get("X-Forwarded-For"); got != "127.0.0.78" {
		t.Errorf("X-Forwarded-For = %q, want the client's own 127.0.0.78", got)
	}
	if code, _, _ := get(t, c, "https://vault.lab.test/"); code == 200 {
		t.Errorf("a private service was served through the relay")
	}
	if code, _, _ := get(t, l.client(d.Addr("http").String(), "127.0.0.78", ""), "http://www.lab.test/"); code != 308 {
		t.Errorf("plain HTTP through the relay: %d, want 308", code)
	}
	m := scrape(t, d.Addr("admin").String())
	if !strings.Contains(m, "labgate_relay_connections_total") {
		t.Errorf("relay metrics:\n%s", grep(m, "labgate_relay"))
	}
}
