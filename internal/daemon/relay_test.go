package daemon

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/proxyproto"
	"github.com/labgate/labgate/internal/relay"
	"github.com/labgate/labgate/internal/testpeer"
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
	setup, err := RelayFromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ro, admin := setup.Relay, setup.Admin
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
	if setup.Speedtest != nil {
		t.Errorf("no relay.speedtest in the file, yet an endpoint: %+v", setup.Speedtest)
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
	d := runRelay(t, RelayOptions{
		Load:   func() (RelaySetup, error) { return RelaySetup{Relay: ro, Admin: "127.0.0.44:0"}, nil },
		Stderr: l.logs,
	})
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

// TestRelayTCPService carries a raw TCP session from a client through labgate
// relay and the gateway's public tcp port to a backend that asks for PROXY
// v2: the backend must see the client's own address. A private tcp service
// on the same gateway must not be reachable through the relay.
func TestRelayTCPService(t *testing.T) {
	l := startLab(t)
	backend, seenFrom := proxyBackend(t)
	private, _ := proxyBackend(t)
	port := testpeer.FreePort(t, "127.0.0.11")
	privPort := testpeer.FreePort(t, "127.0.0.11")
	l.write(fmt.Sprintf(labConfig, l.backend["www"].URL, l.backend["vault"].URL) + fmt.Sprintf(`  - name: mail
    expose: public
    tcp: [{ port: %s, backend: %q, proxy_protocol: v2 }]
  - name: ssh
    tcp: [{ port: %s, backend: %q }]
`, port, backend, privPort, private))
	waitFor(t, "reload", func() bool { return l.d.generation() == 2 })

	ro := relay.Options{
		Routes: []relay.Route{
			{Name: "mail", Proto: "tcp", Listen: "127.0.0.45:" + port, Target: "127.0.0.11:" + port},
			{Name: "ssh", Proto: "tcp", Listen: "127.0.0.45:" + privPort, Target: "127.0.0.11:" + privPort},
		},
		ProbeInterval: -1,
	}
	runRelay(t, RelayOptions{
		Load:   func() (RelaySetup, error) { return RelaySetup{Relay: ro}, nil },
		Stderr: l.logs,
	})
	testpeer.WaitPort(t, "127.0.0.45:"+port)

	dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.79")}, Timeout: 5 * time.Second}
	c, err := dialer.Dial("tcp", "127.0.0.45:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "EHLO client\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("no reply through relay and gateway: %v", err)
	}
	if reply != "echo: EHLO client\r\n" {
		t.Errorf("reply %q", reply)
	}
	// The first connection may be WaitPort's own, from 127.0.0.1.
	var sources []string
	for len(sources) == 0 || sources[len(sources)-1] != "127.0.0.79" {
		select {
		case got := <-seenFrom:
			sources = append(sources, got.Addr().String())
		case <-time.After(5 * time.Second):
			t.Fatalf("backend saw %v in PROXY headers, want the client's 127.0.0.79", sources)
		}
	}

	// The private service's port answers nothing through the relay.
	c2, err := dialer.Dial("tcp", "127.0.0.45:"+privPort)
	if err == nil {
		defer c2.Close()
		fmt.Fprintf(c2, "hello\r\n")
		_ = c2.SetReadDeadline(time.Now().Add(2 * time.Second))
		if b, err := bufio.NewReader(c2).ReadString('\n'); err == nil {
			t.Errorf("private tcp service answered through the relay: %q", b)
		}
	}
}

// proxyBackend is a TCP backend that reads a PROXY header, reports its
// source, and echoes one line.
func proxyBackend(t *testing.T) (string, <-chan netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	seen := make(chan netip.AddrPort, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				h, err := proxyproto.Read(br)
				if err != nil {
					return
				}
				seen <- h.Source
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				fmt.Fprintf(c, "echo: %s", line)
			}()
		}
	}()
	return ln.Addr().String(), seen
}

// runRelay runs a relay daemon until the test ends and returns it once it
// says it is ready.
func runRelay(t *testing.T, opts RelayOptions) *Relay {
	t.Helper()
	ready := make(chan struct{})
	opts.Ready = func(*Relay) { close(ready) }
	d := NewRelay(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("relay stopped: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("relay did not start")
	}
	return d
}
