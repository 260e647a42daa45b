package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/proxyproto"
	"github.com/labgate/labgate/internal/relay"
	"github.com/labgate/labgate/internal/testpeer"
)

// TestRelayUDPService carries UDP datagrams from a client through labgate
// relay (PROXY v2 in each datagram) and the gateway's public udp port to a
// backend that expects PROXY v2: the backend sees the client's own address
// and its reply reaches the client. A reload keeps the socket and the flow.
func TestRelayUDPService(t *testing.T) {
	l := startLab(t)
	backend, seenFrom := udpProxyBackend(t)
	port := testpeer.FreePort(t, "127.0.0.11")
	service := fmt.Sprintf(`  - name: game
    expose: public
    udp: [{ port: %s, backend: %q, proxy_protocol: v2 }]
`, port, backend)
	l.write(fmt.Sprintf(labConfig, l.backend["www"].URL, l.backend["vault"].URL) + service)
	waitFor(t, "reload", func() bool { return l.d.generation() == 2 })

	ro := relay.Options{
		Routes:        []relay.Route{{Name: "game", Proto: "udp", Listen: "127.0.0.45:" + port, Target: "127.0.0.11:" + port}},
		ProbeInterval: -1,
	}
	runRelay(t, RelayOptions{
		Load:   func() (RelaySetup, error) { return RelaySetup{Relay: ro}, nil },
		Stderr: l.logs,
	})

	client, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.80:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	relayAddr := netip.MustParseAddrPort("127.0.0.45:" + port)
	ping := func(msg string) {
		t.Helper()
		buf := make([]byte, 2048)
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := client.WriteToUDPAddrPort([]byte(msg), relayAddr); err != nil {
				t.Fatal(err)
			}
			_ = client.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			n, from, err := client.ReadFromUDPAddrPort(buf)
			if err != nil {
				continue // the relay may not be listening yet
			}
			if got := string(buf[:n]); got != "v2:"+msg || from != relayAddr {
				t.Fatalf("reply %q from %v", got, from)
			}
			return
		}
		t.Fatalf("no reply to %q through relay and gateway", msg)
	}
	ping("hello")
	src := <-seenFrom
	if want := client.LocalAddr().(*net.UDPAddr).AddrPort(); src != want {
		t.Errorf("backend saw %v in the PROXY header, want the client's %v", src, want)
	}

	// A reload (another service added) keeps the gateway's udp socket.
	l.write(fmt.Sprintf(labConfig, l.backend["www"].URL, l.backend["vault"].URL) + service +
		"  - { name: other, host: other, backend: \"" + l.backend["www"].URL + "\" }\n")
	waitFor(t, "reload", func() bool { return l.d.generation() == 3 })
	ping("after reload")
	if logs := l.logs.String(); strings.Contains(logs, "udp service port") {
		t.Errorf("the reload rebound the udp port:\n%s", logs)
	}
}

// udpProxyBackend is a UDP backend that reads a PROXY v2 header from each
// datagram, reports its source and answers "v2:<payload>".
func udpProxyBackend(t *testing.T) (string, <-chan netip.AddrPort) {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan netip.AddrPort, 16)
	stopped := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-stopped })
	go func() {
		defer close(stopped)
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			h, p, err := proxyproto.ParseV2Datagram(buf[:n])
			if err != nil {
				continue
			}
			select {
			case seen <- h.Source:
			default:
			}
			_, _ = c.WriteToUDPAddrPort(append([]byte("v2:"), p...), from)
		}
	}()
	return c.LocalAddr().String(), seen
}
