package l4

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/labgate/labgate/internal/config"
)

// TestUDPMappedTrustedRelay: a trusted relay written as an IPv4-mapped
// address (::ffff:a.b.c.d, as TCP's listen.Policy accepts it) is trusted
// for UDP too, and a private allow list written that way admits its
// IPv4 sources.
func TestUDPMappedTrustedRelay(t *testing.T) {
	plain := startUDPBackend(t, false)
	mapped := func(a netip.Addr) netip.Prefix { return netip.PrefixFrom(netip.AddrFrom16(a.As16()), 128) }
	cfg := &config.Config{
		Path: "lab.yaml",
		Gateway: config.Gateway{
			Public:  &config.PublicListeners{HTTPS: []string{gwIP.String() + ":10443"}, TrustedRelays: []netip.Prefix{mapped(relayIP)}},
			Private: &config.PrivateListeners{HTTPS: []string{"127.0.0.66:9443"}, Allow: []netip.Prefix{netip.MustParsePrefix("::ffff:127.0.0.67/128")}},
		},
		Services: []*config.Service{udpService("game", config.Public, 5000, plain.addr, "")},
	}
	r, err := New(cfg, Options{Metrics: NewMetrics(prometheus.NewRegistry())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = r.Shutdown(ctx)
	})
	set := NewUDPSockets()
	ls := []Listener{udpListener(config.Public, gwIP, 5000), udpListener(config.Private, netip.MustParseAddr("127.0.0.66"), 5000)}
	if err := r.ServeUDP(set, ls); err != nil {
		t.Fatal(err)
	}
	pub := set.Addr(ls[0].Addr).(interface{ AddrPort() netip.AddrPort }).AddrPort()
	priv := set.Addr(ls[1].Addr).(interface{ AddrPort() netip.AddrPort }).AddrPort()

	relay := udpSocketOn(t, relayIP)
	send(t, relay, pub, v2UDP(inetClient, relayUDPDst, "from the relay"))
	if reply, _ := recv(t, relay); reply != "echo:from the relay" {
		t.Errorf("the relay got %q", reply)
	}
	if got := plain.next(t); got.payload != "from the relay" {
		t.Errorf("backend got %q", got.payload)
	}

	lan := udpSocketOn(t, netip.MustParseAddr("127.0.0.67"))
	send(t, lan, priv, []byte("from the lan"))
	if reply, _ := recv(t, lan); reply != "echo:from the lan" {
		t.Errorf("the LAN client got %q", reply)
	}
}
