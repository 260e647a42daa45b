package daemon

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/labgate/labgate/internal/config"
)

func TestRelayInPrivateAllow(t *testing.T) {
	p := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	for _, tc := range []struct {
		name           string
		trusted, allow []netip.Prefix
		want           []string
	}{
		{"the tailnet's range includes the relay", p("100.90.0.1/32"), p("100.64.0.0/10", "192.168.1.0/24"), []string{"100.90.0.1/32"}},
		{"empty allow admits everyone", p("100.90.0.1/32"), nil, []string{"100.90.0.1/32"}},
		{"mapped", p("::ffff:100.90.0.1/128"), p("100.64.0.0/10"), []string{"100.90.0.1/32"}},
		{"apart", p("100.90.0.1/32"), p("100.101.0.0/16", "192.168.1.0/24"), nil},
	} {
		cfg := &config.Config{Gateway: config.Gateway{
			Public:  &config.PublicListeners{TrustedRelays: tc.trusted},
			Private: &config.PrivateListeners{Allow: tc.allow},
		}}
		if got := relayInPrivateAllow(cfg); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := relayInPrivateAllow(&config.Config{Gateway: config.Gateway{Private: &config.PrivateListeners{}}}); got != nil {
		t.Errorf("no public listeners: %v", got)
	}
}
