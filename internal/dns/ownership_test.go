package dns

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/labgate/labgate/internal/statefile/damage"

	"github.com/google/go-cmp/cmp"
)

// TestFileOwnershipAgainstBIND manages a zone without writing a single TXT
// record: what labgate owns is in the state file.
func TestFileOwnershipAgainstBIND(t *testing.T) {
	b, p := startBIND(t, `blog IN A 192.0.2.1`, `old IN A 192.0.2.2`)
	ctx := context.Background()
	state := filepath.Join(t.TempDir(), "state", OwnershipFile)
	z := &Zone{Provider: p, Owner: "homelab", Ownership: &FileOwnership{Path: state}, Desired: Desired{Zone: "example.org"}}
	run := func(desired ...Record) []string {
		t.Helper()
		z.Desired.Records = desired
		cs, err := z.Plan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := z.Apply(ctx, cs); err != nil {
			t.Fatal(err)
		}
		return actions(cs)
	}
	relay := a("relay.example.org", "203.0.113.7")
	vault := cname("vault.example.org", "private-relay.example.org")
	blog := cname("blog.example.org", "relay.example.org")
	if diff := cmp.Diff([]string{
		"create relay.example.org A 203.0.113.7",
		"create vault.example.org CNAME private-relay.example.org",
		"conflict blog.example.org CNAME",
	}, run(relay, vault, blog)); diff != "" {
		t.Fatalf("first run (-want +got):\n%s", diff)
	}
	for _, n := range []string{"a-relay.example.org", "cname-vault.example.org"} {
		if got := query(t, b.Addr, n, "TXT"); len(got) != 0 {
			t.Errorf("a TXT record was written at %s: %v", n, got)
		}
	}
	data, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "zone": "example.org",
  "owner": "homelab",
  "records": [
    {
      "name": "relay.example.org",
      "type": "A"
    },
    {
      "name": "vault.example.org",
      "type": "CNAME"
    }
  ]
}
`
	if diff := cmp.Diff(want, string(data)); diff != "" {
		t.Errorf("state file (-want +got):\n%s", diff)
	}

	// In sync; then vault goes: deleted, as it is listed as ours. old, not
	// listed, stays although nothing wants it.
	if got := run(relay, vault, blog); len(got) != 1 {
		t.Fatalf("second run: %v", got)
	}
	if diff := cmp.Diff([]string{"delete vault.example.org CNAME private-relay.example.org"}, run(relay)); diff != "" {
		t.Fatalf("third run (-want +got):\n%s", diff)
	}
	if got := query(t, b.Addr, "vault.example.org", "CNAME"); len(got) != 0 {
		t.Errorf("vault still there: %v", got)
	}
	for name, v := range map[string]string{"old.example.org": "192.0.2.2", "blog.example.org": "192.0.2.1"} {
		if got := query(t, b.Addr, name, "A"); !slices.Equal(got, []string{v}) {
			t.Errorf("%s A = %v, want %s untouched", name, got, v)
		}
	}
	// Another owner id reads the same file as owning nothing.
	z.Owner = "other"
	if diff := cmp.Diff([]string{"conflict relay.example.org A"}, run(relay)); diff != "" {
		t.Errorf("another owner (-want +got):\n%s", diff)
	}
	// It writes a record of its own; changing dns.owner back finds the
	// first owner's records its own again (the file kept both lists).
	other := a("other.example.org", "192.0.2.9")
	if diff := cmp.Diff([]string{"create other.example.org A 192.0.2.9", "conflict relay.example.org A"}, run(relay, other)); diff != "" {
		t.Errorf("another owner's create (-want +got):\n%s", diff)
	}
	z.Owner = "homelab"
	if got := run(relay); len(got) != 0 {
		t.Errorf("back to the first owner: %v; want relay in place, other.example.org left to its owner", got)
	}
	z.Owner = "other"
	if diff := cmp.Diff([]string{"delete other.example.org A 192.0.2.9"}, run()); diff != "" {
		t.Errorf("the other owner again (-want +got):\n%s", diff)
	}
}

// A damaged ownership file (power loss, a worn SD card) is never replaced
// nor taken for an empty list: reconciling stops with an error that says
// what to do, the zone is left as it is, and restoring the file is enough
// to go on.
func TestFileOwnershipDamaged(t *testing.T) {
	b, p := startBIND(t)
	ctx := context.Background()
	state := filepath.Join(t.TempDir(), "state", OwnershipFile)
	z := &Zone{Provider: p, Owner: "homelab", Ownership: &FileOwnership{Path: state}, Desired: Desired{Zone: "example.org"}}
	relay := a("relay.example.org", "203.0.113.7")
	vault := cname("vault.example.org", "private-relay.example.org")
	z.Desired.Records = []Record{relay, vault}
	cs, err := z.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := z.Apply(ctx, cs); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	// vault is no longer wanted: with a whole file it would be deleted.
	z.Desired.Records = []Record{relay}
	for name, data := range damage.File(good) {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(state, data, 0o600); err != nil {
				t.Fatal(err)
			}
			cs, err := z.Plan(ctx)
			if err == nil {
				t.Fatalf("planned %v from a damaged ownership file", actions(cs))
			}
			for _, want := range []string{state + " is damaged", "restore it from a backup", "move it aside to start over", "show as conflicts"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q: %v", want, err)
				}
			}
			if got, _ := os.ReadFile(state); !bytes.Equal(got, data) {
				t.Errorf("the damaged file was changed")
			}
			if got := query(t, b.Addr, "vault.example.org", "CNAME"); len(got) != 1 {
				t.Errorf("vault.example.org was changed: %v", got)
			}
		})
	}
	// Restored from a backup: labgate goes on where it was.
	if err := os.WriteFile(state, good, 0o600); err != nil {
		t.Fatal(err)
	}
	cs, err = z.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"delete vault.example.org CNAME private-relay.example.org"}, actions(cs)); diff != "" {
		t.Errorf("after the restore (-want +got):\n%s", diff)
	}
	if ents, _ := os.ReadDir(filepath.Dir(state)); len(ents) != 1 {
		t.Errorf("files beside the ownership file: %v", ents)
	}
}
