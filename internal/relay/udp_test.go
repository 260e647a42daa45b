package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/labgate/labgate/internal/proxyproto"
)

// udpGateway is a fake gateway for UDP: it parses the PROXY header of every
// datagram, reports it with the relay socket it came from, and answers
// "re:"+payload.
type udpGateway struct {
	conn *net.UDPConn
	got  chan udpSeen
	done chan struct{}
}

type udpSeen struct {
	h       *proxyproto.Header
	payload string
	from    netip.AddrPort // the relay's flow socket
}

func newUDPGateway(t *testing.T) *udpGateway {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	g := &udpGateway{conn: c, got: make(chan udpSeen, 100), done: make(chan struct{})}
	go func() {
		defer close(g.done)
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			h, payload, err := proxyproto.ParseV2Datagram(buf[:n])
			if err != nil {
				t.Errorf("udp gateway: %v", err)
				continue
			}
			g.got <- udpSeen{h, string(payload), from}
			c.WriteToUDPAddrPort(append([]byte("re:"), payload...), from)
		}
	}()
	t.Cleanup(func() { c.Close(); <-g.done })
	return g
}

func (g *udpGateway) next(t *testing.T) udpSeen {
	t.Helper()
	select {
	case s := <-g.got:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("udp gateway: no datagram")
		return udpSeen{}
	}
}

func udpClient(t *testing.T, src string, relay net.Addr) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, relay.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func udpRoundTrip(t *testing.T, c *net.UDPConn, msg string) string {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 65536)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

// TestUDP: each datagram reaches the gateway with a v2 UDP header carrying
// the client's address and the relay's; replies come back to the right
// client; flows are per client address and expire when idle.
func TestUDP(t *testing.T) {
	gw := newUDPGateway(t)
	m := NewMetrics(prometheus.NewRegistry())
	r := startRelay(t, Options{Metrics: m, UDPFlowTimeout: 200 * time.Millisecond, Routes: []Route{
		{Name: "quic", Proto: "udp", Listen: "127.0.0.1:0", Target: gw.conn.LocalAddr().String()},
	}})
	relayAddr := r.Addr("quic")
	a := udpClient(t, "127.0.0.91", relayAddr)
	b := udpClient(t, "127.0.0.92", relayAddr)

	tests := []struct {
		client *net.UDPConn
		msg    string
	}{{a, "from a"}, {b, "from b"}, {a, "again a"}, {b, string(make([]byte, 9000))}}
	flowOf := make(map[netip.AddrPort]netip.AddrPort) // client -> relay flow socket
	for _, tt := range tests {
		if got := udpRoundTrip(t, tt.client, tt.msg); got != "re:"+tt.msg {
			t.Errorf("reply %q", got[:min(len(got), 20)])
		}
		seen := gw.next(t)
		want := &proxyproto.Header{Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.UDP,
			Source: ap(t, tt.client.LocalAddr()), Destination: ap(t, relayAddr)}
		if diff := cmp.Diff(want, seen.h, cmp.Comparer(func(x, y netip.AddrPort) bool { return x == y })); diff != "" {
			t.Errorf("header (-want +got):\n%s", diff)
		}
		if seen.payload != tt.msg {
			t.Errorf("payload %d bytes, want %d", len(seen.payload), len(tt.msg))
		}
		src := seen.h.Source
		if prev, ok := flowOf[src]; ok && prev != seen.from {
			t.Errorf("client %v changed flow socket %v -> %v", src, prev, seen.from)
		}
		flowOf[src] = seen.from
	}
	if len(flowOf) != 2 || counter(m.flows.WithLabelValues("quic")) != 2 {
		t.Errorf("flows: %d sockets, gauge %v, want 2", len(flowOf), counter(m.flows.WithLabelValues("quic")))
	}

	// Idle flows expire; the next datagram opens a new one.
	eventually(t, "flows to expire", func() bool { return counter(m.flows.WithLabelValues("quic")) == 0 })
	udpRoundTrip(t, a, "after expiry")
	if s := gw.next(t); s.from == flowOf[s.h.Source] {
		t.Errorf("expired flow socket %v reused", s.from)
	}
	if n := counter(m.conns.WithLabelValues("quic", ResultForwarded)); n != 3 {
		t.Errorf("flows opened: %v, want 3", n)
	}
}

// TestUDPFlowLimit: datagrams of new clients beyond UDPMaxFlows are dropped
// and counted; existing flows go on.
func TestUDPFlowLimit(t *testing.T) {
	gw := newUDPGateway(t)
	m := NewMetrics(prometheus.NewRegistry())
	r := startRelay(t, Options{Metrics: m, UDPMaxFlows: 1, Routes: []Route{
		{Name: "wg", Proto: "udp", Listen: "127.0.0.1:0", Target: gw.conn.LocalAddr().String()},
	}})
	a := udpClient(t, "127.0.0.93", r.Addr("wg"))
	b := udpClient(t, "127.0.0.94", r.Addr("wg"))
	udpRoundTrip(t, a, "a")
	b.Write([]byte("b"))
	eventually(t, "the drop to be counted", func() bool { return counter(m.errors.WithLabelValues("wg", ReasonFlowLimit)) == 1 })
	udpRoundTrip(t, a, "a still")
}

// TestUDPSourceLimit: one client address, sending from many ports, gets at
// most MaxConnsPerSource flows; other clients still get theirs.
func TestUDPSourceLimit(t *testing.T) {
	gw := newUDPGateway(t)
	m := NewMetrics(prometheus.NewRegistry())
	r := startRelay(t, Options{Metrics: m, MaxConnsPerSource: 2, UDPMaxFlows: 3, Routes: []Route{
		{Name: "wg", Proto: "udp", Listen: "127.0.0.1:0", Target: gw.conn.LocalAddr().String()},
	}})
	a1 := udpClient(t, "127.0.0.95", r.Addr("wg"))
	a2 := udpClient(t, "127.0.0.95", r.Addr("wg"))
	udpRoundTrip(t, a1, "a1")
	udpRoundTrip(t, a2, "a2")
	a3 := udpClient(t, "127.0.0.95", r.Addr("wg"))
	a3.Write([]byte("a3"))
	eventually(t, "the drop to be counted", func() bool { return counter(m.errors.WithLabelValues("wg", ReasonSourceLimit)) == 1 })
	udpRoundTrip(t, udpClient(t, "127.0.0.96", r.Addr("wg")), "another client")
	udpRoundTrip(t, a1, "a1 still")
}

// TestUDPSourceLimitAfterExpiry: flows that expired no longer count
// against their source: a client whose old flows timed out (a game or a
// VPN client on a new port after a pause) is forwarded again.
func TestUDPSourceLimitAfterExpiry(t *testing.T) {
	gw := newUDPGateway(t)
	m := NewMetrics(prometheus.NewRegistry())
	r := startRelay(t, Options{Metrics: m, MaxConnsPerSource: 1, UDPFlowTimeout: 100 * time.Millisecond, Routes: []Route{
		{Name: "wg", Proto: "udp", Listen: "127.0.0.1:0", Target: gw.conn.LocalAddr().String()},
	}})
	for i := range 3 {
		c := udpClient(t, "127.0.0.97", r.Addr("wg"))
		if got := udpRoundTrip(t, c, fmt.Sprint("flow ", i)); got != fmt.Sprint("re:flow ", i) {
			t.Fatalf("flow %d: reply %q", i, got)
		}
		eventually(t, "the flow to expire", func() bool { return counter(m.flows.WithLabelValues("wg")) == 0 })
	}
	if n := counter(m.errors.WithLabelValues("wg", ReasonSourceLimit)); n != 0 {
		t.Errorf("%v datagrams dropped for the source limit, want none", n)
	}
}

// TestProbe: Probe sends a LOCAL header and a HEAD request and accepts any
// HTTP answer; Run exports the result as labgate_relay_gateway_up.
func TestProbe(t *testing.T) {
	serve := func(answer string) *gateway {
		return newGateway(t, func(c *bufConn) {
			br := bufio.NewReader(c)
			for {
				line, err := br.ReadString('\n')
				if err != nil || line == "\r\n" {
					break
				}
			}
			io.WriteString(c, answer)
		})
	}
	httpGW := serve("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
	smtpGW := serve("220 mail.example.org ESMTP\r\n")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()

	ctx := context.Background()
	if err := Probe(ctx, httpGW.addr()); err != nil {
		t.Errorf("probe of an HTTP gateway: %v", err)
	}
	if h := httpGW.header(); h.Command != proxyproto.Local {
		t.Errorf("probe header command %v, want LOCAL", h.Command)
	}
	if err := Probe(ctx, smtpGW.addr()); !errors.Is(err, ErrNotHTTP) {
		t.Errorf("probe of SMTP: %v, want ErrNotHTTP", err)
	}
	if err := Probe(ctx, closed); err == nil {
		t.Error("probe of a closed port succeeded")
	}

	m := NewMetrics(prometheus.NewRegistry())
	startRelay(t, Options{Metrics: m, ProbeInterval: 20 * time.Millisecond,
		ProbeTargets: []string{httpGW.addr(), closed},
		Routes:       []Route{{Name: "http", Proto: "tcp", Listen: "127.0.0.1:0", Target: httpGW.addr()}}})
	eventually(t, "gateway_up", func() bool {
		return counter(m.gatewayUp.WithLabelValues(httpGW.addr())) == 1
	})
	if up := counter(m.gatewayUp.WithLabelValues(closed)); up != 0 {
		t.Errorf("closed port up = %v", up)
	}
	for len(httpGW.headers) > 0 {
		<-httpGW.headers
	}
}
