package relay

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestSourceLimitIPv6Prefix: IPv6 clients are counted by /64, since one
// host can connect from every address of its /64; IPv4 clients, and
// IPv4-mapped IPv6 ones, by address.
func TestSourceLimitIPv6Prefix(t *testing.T) {
	var tab connTable
	tab.init()
	rc := &routeConf{cfg: &config{opts: Options{MaxConnsPerSource: 2}}}
	add := func(s string) *tcpConn { return tab.add(netip.MustParseAddr(s), rc, nil) }

	a := add("2001:db8:1:2::1")
	b := add("2001:db8:1:2:ffff:ffff:ffff:ffff")
	if a == nil || b == nil {
		t.Fatal("the first two connections of a /64 were refused")
	}
	if add("2001:db8:1:2::3") != nil {
		t.Error("a third connection from the same /64, another address, was admitted")
	}
	if add("2001:db8:1:3::1") == nil {
		t.Error("the next /64 was refused")
	}
	tab.remove(a)
	if add("2001:db8:1:2::4") == nil {
		t.Error("a freed slot of the /64 was not given back")
	}

	if add("192.0.2.1") == nil || add("::ffff:192.0.2.1") == nil {
		t.Fatal("two connections of one IPv4 address were refused")
	}
	if add("192.0.2.1") != nil {
		t.Error("an IPv4-mapped address escaped its IPv4 address's limit")
	}
	if add("192.0.2.2") == nil {
		t.Error("the next IPv4 address was refused")
	}
}

// TestBound: Bound closes once Run has bound every route, and stays open
// when Run cannot bind.
func TestBound(t *testing.T) {
	r, err := New(Options{Metrics: NewMetrics(prometheus.NewRegistry()), ProbeInterval: -1, Routes: []Route{
		{Name: "t", Proto: "tcp", Listen: "127.0.0.1:0", Target: "127.0.0.1:1"},
		{Name: "u", Proto: "udp", Listen: "127.0.0.1:0", Target: "127.0.0.1:1"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.Bound():
		t.Fatal("bound before Run")
	default:
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	<-r.Bound()
	if r.Addr("t") == nil || r.Addr("u") == nil {
		t.Error("Bound closed before every route was bound")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	r2, err := New(Options{Metrics: NewMetrics(prometheus.NewRegistry()), ProbeInterval: -1, Routes: []Route{
		{Name: "t", Proto: "tcp", Listen: taken.Addr().String(), Target: "127.0.0.1:1"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.Run(context.Background()); err == nil {
		t.Fatal("Run bound a taken address")
	}
	select {
	case <-r2.Bound():
		t.Error("Bound closed although Run failed to bind")
	default:
	}
}
