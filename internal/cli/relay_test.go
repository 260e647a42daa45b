package cli

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/labgate/labgate/internal/daemon"
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

// The VPS runs `labgate relay -c lab.yaml` from the lab's file
// (examples/gitops) without the lab's credentials: the relay reads none.
func TestRelayNeedsNoSecret(t *testing.T) {
	t.Setenv("CF_API_TOKEN", "")
	os.Unsetenv("CF_API_TOKEN")
	const file = "../../examples/gitops/lab.yaml"
	if _, err := loadConfig(file); err == nil {
		t.Fatal("the example no longer has a secret from the environment: this test proves nothing")
	}
	cfg, err := loadUnreadSecrets(file)
	if err != nil {
		t.Fatalf("relay refused the file without CF_API_TOKEN: %v", err)
	}
	setup, err := daemon.RelayFromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(setup.Relay.Routes) == 0 {
		t.Error("no routes from the example's relay section")
	}
}
