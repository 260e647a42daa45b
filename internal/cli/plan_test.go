package cli

import (
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/labgate/labgate/internal/testpeer"
)

// TestPlanScripts runs the `labgate plan` scenarios in testdata/plan against
// a real BIND, whose zone example.org holds a hand-made record, one of
// labgate's that is no longer wanted and one of labgate's to update. plan
// changes nothing, so the scenarios share it.
func TestPlanScripts(t *testing.T) {
	b := testpeer.StartBIND(t, "example.org",
		`blog IN A 192.0.2.1`,
		`gone IN CNAME relay.example.org.`,
		`cname-gone IN TXT "heritage=external-dns,external-dns/owner=homelab"`,
		`relay IN A 203.0.113.1`,
		`a-relay IN TXT "heritage=external-dns,external-dns/owner=homelab"`,
	)
	testscript.Run(t, testscript.Params{
		Dir: "testdata/plan",
		Setup: func(e *testscript.Env) error {
			e.Setenv("BIND_ADDR", b.Addr)
			e.Setenv("BIND_KEY", b.KeyName)
			e.Setenv("BIND_SECRET", b.Secret)
			return nil
		},
	})
}
