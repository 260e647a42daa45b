package relay

import (
	"net/netip"
	"testing"
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
