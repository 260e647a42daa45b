package l4

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/proxyproto"
)

// udpGot is one datagram a test backend received.
type udpGot struct {
	from    netip.AddrPort     // the gateway's flow socket
	hdr     *proxyproto.Header // nil for a plain backend
	payload string
}

// udpBackend is a real UDP backend on beIP that answers every datagram:
// "echo:<payload>" (plain) or "v2:<payload>" after parsing a PROXY v2
// header (withHeader).
type udpBackend struct {
	addr string
	got  chan udpGot
}

func startUDPBackend(t *testing.T, withHeader bool) *udpBackend {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(beIP, 0)))
	if err != nil {
		t.Fatal(err)
	}
	b := &udpBackend{addr: c.LocalAddr().String(), got: make(chan udpGot, 64)}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			g := udpGot{from: from, payload: string(buf[:n])}
			reply := "echo:" + g.payload
			if withHeader {
				h, p, err := proxyproto.ParseV2Datagram(buf[:n])
				if err != nil {
					t.Errorf("v2 backend: %v in %q", err, buf[:n])
					continue
				}
				g.hdr, g.payload = h, string(p)
				reply = "v2:" + g.payload
			}
			b.got <- g
			_, _ = c.WriteToUDPAddrPort([]byte(reply), from)
		}
	})
	t.Cleanup(func() {
		c.Close()
		wg.Wait()
	})
	return b
}

func (b *udpBackend) next(t *testing.T) udpGot {
	t.Helper()
	select {
	case g := <-b.got:
		return g
	case <-time.After(5 * time.Second):
		t.Fatal("the udp backend received nothing")
		return udpGot{}
	}
}

// udpSocketOn is a client or relay socket on ip.
func udpSocketOn(t *testing.T, ip netip.Addr) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func localOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

func send(t *testing.T, c *net.UDPConn, to netip.AddrPort, b []byte) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(b, to); err != nil {
		t.Fatal(err)
	}
}

// recv returns the next datagram on c and its source, or fails after 5s.
func recv(t *testing.T, c *net.UDPConn) (string, netip.AddrPort) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 65535)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	return string(buf[:n]), from
}

// silent fails if c receives anything within d.
func silent(t *testing.T, c *net.UDPConn, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 65535)
	if n, _, err := c.ReadFromUDPAddrPort(buf); err == nil {
		t.Fatalf("got %q, want nothing", buf[:n])
	}
}

func v2UDP(src, dst netip.AddrPort, payload string) []byte {
	h := proxyproto.Header{Command: proxyproto.Proxy, Transport: proxyproto.UDP, Source: src, Destination: dst}
	return append(h.AppendV2(nil), payload...)
}

func udpService(name string, expose config.Class, port int, backend, proxy string) *config.Service {
	return &config.Service{Name: name, Expose: expose, UDP: []config.L4Route{{Port: port, Backend: backend, ProxyProtocol: proxy}}}
}

// serveUDP serves ls from set (a new one if nil) and returns the bound
// address of each listener's Addr.
func (g *gateway) serveUDP(t *testing.T, set *UDPSockets, ls ...Listener) (*UDPSockets, []netip.AddrPort) {
	t.Helper()
	if set == nil {
		set = NewUDPSockets()
	}
	if err := g.r.ServeUDP(set, ls); err != nil {
		t.Fatal(err)
	}
	var out []netip.AddrPort
	for _, l := range ls {
		out = append(out, set.Addr(l.Addr).(*net.UDPAddr).AddrPort())
	}
	return set, out
}

func udpListener(class config.Class, ip netip.Addr, port int) Listener {
	return Listener{Class: class, Proto: "udp", Addr: netip.AddrPortFrom(ip, 0).String(), Port: port}
}

var (
	inetClient2 = netip.MustParseAddrPort("198.51.100.8:40002")
	relayUDPDst = netip.MustParseAddrPort("203.0.113.7:5000")
)

// TestUDPFromRelay: a trusted relay sends datagrams of two internet clients,
// each from its own socket and behind a PROXY v2 header; a plain backend
// gets the bare payloads on one flow per client, a v2 backend the client's
// address in each datagram, and the replies come back to the relay's
// sockets without a header.
func TestUDPFromRelay(t *testing.T) {
	plain := startUDPBackend(t, false)
	v2 := startUDPBackend(t, true)
	g := newGateway(t, Options{},
		udpService("game", config.Public, 5000, plain.addr, ""),
		udpService("quic", config.Public, 5001, v2.addr, "v2"))
	_, addrs := g.serveUDP(t, nil, udpListener(config.Public, gwIP, 5000), udpListener(config.Public, netip.MustParseAddr("127.0.0.65"), 5001))
	gamePort, quicPort := addrs[0], addrs[1]

	relayA, relayB := udpSocketOn(t, relayIP), udpSocketOn(t, relayIP)

	// Plain backend: the header is taken off; one flow socket per client.
	send(t, relayA, gamePort, v2UDP(inetClient, relayUDPDst, "hello A"))
	gotA := plain.next(t)
	if reply, from := recv(t, relayA); reply != "echo:hello A" || from != gamePort {
		t.Errorf("relay A got %q from %v, want %q from %v", reply, from, "echo:hello A", gamePort)
	}
	send(t, relayB, gamePort, v2UDP(inetClient2, relayUDPDst, "hello B"))
	gotB := plain.next(t)
	if reply, _ := recv(t, relayB); reply != "echo:hello B" {
		t.Errorf("relay B got %q", reply)
	}
	send(t, relayA, gamePort, v2UDP(inetClient, relayUDPDst, "again A"))
	gotA2 := plain.next(t)
	if reply, _ := recv(t, relayA); reply != "echo:again A" {
		t.Errorf("relay A got %q", reply)
	}
	if gotA.payload != "hello A" || gotB.payload != "hello B" || gotA2.payload != "again A" {
		t.Errorf("plain backend payloads %q %q %q: the header must not reach it", gotA.payload, gotB.payload, gotA2.payload)
	}
	if gotA.from == gotB.from || gotA.from != gotA2.from {
		t.Errorf("flow sockets A %v, B %v, A again %v: want one per client", gotA.from, gotB.from, gotA2.from)
	}

	// v2 backend: each datagram says who the client is.
	for _, c := range []struct {
		relay  *net.UDPConn
		client netip.AddrPort
	}{{relayA, inetClient}, {relayB, inetClient2}} {
		send(t, c.relay, quicPort, v2UDP(c.client, relayUDPDst, "initial"))
		got := v2.next(t)
		if got.hdr == nil || got.hdr.Command != proxyproto.Proxy || got.hdr.Transport != proxyproto.UDP ||
			got.hdr.Source != c.client || got.hdr.Destination != relayUDPDst || got.payload != "initial" {
			t.Errorf("v2 backend got %+v %q, want PROXY UDP %v -> %v", got.hdr, got.payload, c.client, relayUDPDst)
		}
		if reply, _ := recv(t, c.relay); reply != "v2:initial" {
			t.Errorf("reply %q, want it without a header", reply)
		}
	}
	g.waitMetric(t, `labgate_l4_udp_flows{service="game"}`, "2")
	g.waitMetric(t, `labgate_l4_udp_datagrams_total{direction="in",port="5000",service="game"}`, "3")
	g.waitMetric(t, `labgate_l4_udp_datagrams_total{direction="out",port="5000",service="game"}`, "3")
	g.waitMetric(t, `labgate_l4_udp_datagrams_total{direction="in",port="5001",service="quic"}`, "2")
}

// TestUDPPublicRefusals: datagrams from a source that is not a trusted
// relay, and from a trusted relay without a valid PROXY v2 UDP header, are
// dropped and counted, and logged once per source per minute; LOCAL probes
// are counted as such.
func TestUDPPublicRefusals(t *testing.T) {
	plain := startUDPBackend(t, false)
	g := newGateway(t, Options{}, udpService("game", config.Public, 5000, plain.addr, ""))
	_, addrs := g.serveUDP(t, nil, udpListener(config.Public, gwIP, 5000))
	port := addrs[0]

	stranger := udpSocketOn(t, clientIP)
	for range 3 {
		send(t, stranger, port, v2UDP(inetClient, relayUDPDst, "let me in"))
	}
	relay := udpSocketOn(t, relayIP)
	send(t, relay, port, []byte("no header"))
	send(t, relay, port, []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x12\x00\x40truncated"))
	tcpHdr := proxyproto.Header{Command: proxyproto.Proxy, Transport: proxyproto.TCP, Source: inetClient, Destination: relayUDPDst}
	send(t, relay, port, append(tcpHdr.AppendV2(nil), "tcp"...))
	local := proxyproto.Header{Command: proxyproto.Local}
	send(t, relay, port, local.AppendV2(nil))

	g.waitMetric(t, `labgate_l4_udp_dropped_total{reason="untrusted"}`, "3")
	g.waitMetric(t, `labgate_l4_udp_dropped_total{reason="no_header"}`, "1")
	g.waitMetric(t, `labgate_l4_udp_dropped_total{reason="invalid_header"}`, "2")
	g.waitMetric(t, `labgate_l4_udp_dropped_total{reason="probe"}`, "1")
	silent(t, stranger, 200*time.Millisecond)
	silent(t, relay, 10*time.Millisecond)
	select {
	case got := <-plain.got:
		t.Fatalf("the backend received %q", got.payload)
	default:
	}
	logs := g.logs.String()
	if n := strings.Count(logs, "not a trusted relay"); n != 1 {
		t.Errorf("%d log lines for the untrusted source, want 1 per minute:\n%s", n, logs)
	}
	if !strings.Contains(logs, "peer="+localOf(stranger).String()) {
		t.Errorf("the log does not name the source:\n%s", logs)
	}
	g.waitMetric(t, `labgate_l4_udp_flows{service="game"}`, "0")
}

// TestUDPPrivate: on a private socket the datagram's source is the client,
// with no header; a v2 backend is told the client and the gateway's
// address.
func TestUDPPrivate(t *testing.T) {
	v2 := startUDPBackend(t, true)
	g := newGateway(t, Options{}, udpService("dns", config.Private, 5353, v2.addr, "v2"))
	_, addrs := g.serveUDP(t, nil, udpListener(config.Private, gwIP, 5353))
	port := addrs[0]

	client := udpSocketOn(t, clientIP)
	send(t, client, port, []byte("query"))
	got := v2.next(t)
	if got.hdr == nil || got.hdr.Source != localOf(client) || got.hdr.Destination != port || got.payload != "query" {
		t.Errorf("backend got %+v %q, want PROXY UDP %v -> %v", got.hdr, got.payload, localOf(client), port)
	}
	if reply, from := recv(t, client); reply != "v2:query" || from != port {
		t.Errorf("client got %q from %v", reply, from)
	}
	// A header from a private client is its payload, never trusted.
	send(t, client, port, v2UDP(inetClient, relayUDPDst, "spoof"))
	if got := v2.next(t); got.hdr.Source != localOf(client) || !strings.HasSuffix(got.payload, "spoof") {
		t.Errorf("a private client's own header was believed: %+v %q", got.hdr, got.payload)
	}
	recv(t, client)
}

// TestUDPSharedAddressClassBySource: a public and a private udp listener on
// one address: the relay's datagrams are public (header required), anyone
// else's private; a private service is not reachable through the relay.
func TestUDPSharedAddressClassBySource(t *testing.T) {
	pubBE := startUDPBackend(t, false)
	privBE := startUDPBackend(t, false)
	g := newGateway(t, Options{},
		udpService("game", config.Public, 5000, pubBE.addr, ""),
		udpService("lan", config.Private, 5001, privBE.addr, ""))
	_, addrs := g.serveUDP(t, nil,
		udpListener(config.Public, gwIP, 5000), udpListener(config.Private, gwIP, 5000),
		udpListener(config.Private, netip.MustParseAddr("127.0.0.65"), 5001))
	game := addrs[0]

	relay, client := udpSocketOn(t, relayIP), udpSocketOn(t, clientIP)
	send(t, relay, game, v2UDP(inetClient, relayUDPDst, "from the internet"))
	if got := pubBE.next(t); got.payload != "from the internet" {
		t.Errorf("public: %q", got.payload)
	}
	recv(t, relay)
	send(t, client, game, []byte("from the lan"))
	if got := pubBE.next(t); got.payload != "from the lan" {
		t.Errorf("private: %q", got.payload)
	}
	recv(t, client)

	// A private service has no public route: a datagram of the public
	// class never reaches it.
	if _, ok := g.r.udpRoutes[routeKey{config.Public, 5001}]; ok {
		t.Error("a private udp service has a public route")
	}
}

// TestUDPFlowExpiry: a flow without datagrams for UDPFlowTimeout ends (its
// backend socket is closed); the client's next datagram opens a new one.
func TestUDPFlowExpiry(t *testing.T) {
	plain := startUDPBackend(t, false)
	g := newGateway(t, Options{UDPFlowTimeout: 100 * time.Millisecond}, udpService("game", config.Private, 5000, plain.addr, ""))
	_, addrs := g.serveUDP(t, nil, udpListener(config.Private, gwIP, 5000))
	client := udpSocketOn(t, clientIP)

	send(t, client, addrs[0], []byte("one"))
	first := plain.next(t)
	recv(t, client)
	g.waitMetric(t, `labgate_l4_udp_flows{service="game"}`, "1")
	g.waitMetric(t, `labgate_l4_udp_flows{service="game"}`, "0")
	if !strings.Contains(g.logs.String(), "result=idle_timeout") {
		t.Errorf("no flow log with result=idle_timeout:\n%s", g.logs)
	}
	send(t, client, addrs[0], []byte("two"))
	second := plain.next(t)
	recv(t, client)
	if first.from == second.from {
		t.Errorf("the expired flow's socket %v was reused", first.from)
	}
}

// TestUDPFlowLimit: past MaxUDPFlows a new client's datagram is dropped
// and counted; existing flows go on.
func TestUDPFlowLimit(t *testing.T) {
	plain := startUDPBackend(t, false)
	g := newGateway(t, Options{MaxUDPFlows: 2}, udpService("game", config.Private, 5000, plain.addr, ""))
	_, addrs := g.serveUDP(t, nil, udpListener(config.Private, gwIP, 5000))
	var clients []*net.UDPConn
	for range 3 {
		clients = append(clients, udpSocketOn(t, clientIP))
	}
	for _, c := range clients[:2] {
		send(t, c, addrs[0], []byte("hi"))
		recv(t, c)
	}
	send(t, clients[2], addrs[0], []byte("hi"))
	g.waitMetric(t, `labgate_l4_udp_dropped_total{reason="flow_limit"}`, "1")
	silent(t, clients[2], 100*time.Millisecond)
	send(t, clients[0], addrs[0], []byte("still here"))
	if reply, _ := recv(t, clients[0]); reply != "echo:still here" {
		t.Errorf("existing flow: %q", reply)
	}
}

// TestUDPGenerations: the next generation's router reuses the socket (no
// rebind); its new flows take its routes while the old flow keeps its
// backend until it idles out; a generation that is closed without serving
// (a failed build) releases the socket it bound alone.
func TestUDPGenerations(t *testing.T) {
	be1, be2 := startUDPBackend(t, false), startUDPBackend(t, true)
	g1 := newGateway(t, Options{UDPFlowTimeout: 200 * time.Millisecond}, udpService("game", config.Private, 5000, be1.addr, ""))
	set, addrs := g1.serveUDP(t, nil, udpListener(config.Private, gwIP, 5000))
	port := addrs[0]
	old := udpSocketOn(t, clientIP)
	send(t, old, port, []byte("gen1"))
	be1.next(t)
	recv(t, old)

	// A failed build: binds a second address, shares the first, closes.
	failed := newGateway(t, Options{}, udpService("game", config.Private, 5000, be2.addr, "v2"))
	extra := udpListener(config.Private, netip.MustParseAddr("127.0.0.66"), 5000)
	failed.serveUDP(t, set, udpListener(config.Private, gwIP, 5000), extra)
	extraAddr := set.Addr(extra.Addr).String()
	failed.r.Close()
	if set.Addr(extra.Addr) != nil {
		t.Error("the failed generation's own socket is still open")
	}
	if c, err := net.ListenPacket("udp", extraAddr); err != nil {
		t.Errorf("rebinding the released %s: %v", extraAddr, err)
	} else {
		c.Close()
	}

	g2 := newGateway(t, Options{UDPFlowTimeout: 200 * time.Millisecond}, udpService("game", config.Private, 5000, be2.addr, "v2"))
	_, addrs2 := g2.serveUDP(t, set, udpListener(config.Private, gwIP, 5000))
	if addrs2[0] != port {
		t.Fatalf("generation 2 serves %v, want the same socket %v", addrs2[0], port)
	}
	g1.r.Close()
	send(t, old, port, []byte("old flow"))
	if got := be1.next(t); got.payload != "old flow" {
		t.Errorf("old flow: %q", got.payload)
	}
	recv(t, old)
	fresh := udpSocketOn(t, clientIP)
	send(t, fresh, port, []byte("new flow"))
	if got := be2.next(t); got.hdr == nil || got.hdr.Source != localOf(fresh) {
		t.Errorf("new flow reached %+v, want generation 2's v2 backend", got)
	}
	recv(t, fresh)

	// The old flow idles out; the socket stays with generation 2, and the
	// old client is then a new flow of generation 2.
	g1.waitMetric(t, `labgate_l4_udp_flows{service="game"}`, "0")
	send(t, old, port, []byte("after"))
	if got := be2.next(t); got.hdr == nil || got.payload != "after" {
		t.Errorf("after the old flow ended: %+v", got)
	}
	recv(t, old)
}

func TestCheckUDPProxyV1(t *testing.T) {
	cfg := parse(t, designGateway, `
services:
  - name: wg
    expose: public
    udp:
      - { port: 51820, backend: 192.168.1.31:51820, proxy_protocol: v1 }
      - { port: 51821, backend: 192.168.1.31:51821, proxy_protocol: v2 }
`)
	err := Check(cfg)
	want := `lab.yaml:18:69: services[0].udp[0].proxy_protocol: udp port 51820: PROXY protocol v1 has no UDP form: use proxy_protocol: v2 (one header in each datagram, if the backend expects it) or none`
	if err == nil || err.Error() != want {
		t.Errorf("Check:\n got %v\nwant %s", err, want)
	}
}
