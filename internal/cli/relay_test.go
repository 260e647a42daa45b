package cli

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/labgate/labgate/internal/relay"
)

func TestRelayFromFlags(t *testing.T) {
	ro, err := relayFromFlags("100.101.102.103", "0.0.0.0", []string{"tcp:443=10443", "tcp:80=10080", "tcp:25", "udp:51820"})
	if err != nil {
		t.Fatal(err)
	}
	want := relay.Options{
		Routes: []relay.Route{
			{Name: "tcp/443", Proto: "tcp", Listen: "0.0.0.0:443", Target: "100.101.102.103:10443", PeekTLS: true},
			{Name: "tcp/80", Proto: "tcp", Listen: "0.0.0.0:80", Target: "100.101.102.103:10080"},
			{Name: "tcp/25", Proto: "tcp", Listen: "0.0.0.0:25", Target: "100.101.102.103:25"},
			{Name: "udp/51820", Proto: "udp", Listen: "0.0.0.0:51820", Target: "100.101.102.103:51820"},
		},
		// Only the plain-HTTP listener is probed: the mail port must never get HTTP.
		ProbeTargets: []string{"100.101.102.103:10080"},
	}
	if diff := cmp.Diff(want, ro, cmpopts.IgnoreFields(relay.Options{}, "ConnectTimeout", "IdleTimeout", "MaxConnsPerSource", "UDPFlowTimeout")); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	ro, err = relayFromFlags("100.101.102.103", "0.0.0.0", []string{"tcp:25"})
	if err != nil {
		t.Fatal(err)
	}
	if ro.ProbeInterval >= 0 || len(ro.ProbeTargets) != 0 {
		t.Errorf("a relay without port 80 must not probe: interval %v, targets %v", ro.ProbeInterval, ro.ProbeTargets)
	}
}
