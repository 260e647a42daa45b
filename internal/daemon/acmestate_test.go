package daemon

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labgate/labgate/internal/statefile/damage"
)

// Damaged ACME storage, as a power loss leaves it. A damaged certificate
// kept its name from being served at all (or, cut short, served without
// its chain) until the user noticed: now it is moved aside and obtained
// again, once. A damaged account is kept (it is who labgate is to the CA):
// what is stored is served, and the log says how to restore it.
func TestACMEDamagedStorage(t *testing.T) {
	seed := t.TempDir()
	l := newACMELab(t, seed, "www")
	l.start()
	www := l.served("www")
	l.stop()
	find := func(pattern string) string {
		m, _ := filepath.Glob(filepath.Join(seed, "state", "acme", pattern))
		if len(m) != 1 {
			t.Fatalf("%s: %v", pattern, m)
		}
		rel, _ := filepath.Rel(seed, m[0])
		return rel
	}
	for _, tc := range []struct {
		file, how string
		account   bool
	}{
		{file: find("certificates/*/www.lab.test/www.lab.test.crt"), how: "half"}, // the chain cut short
		{file: find("certificates/*/www.lab.test/www.lab.test.key"), how: "random"},
		{file: find("certificates/*/www.lab.test/www.lab.test.json"), how: "empty"},
		{file: find("acme/*/users/*/*.key"), how: "half", account: true},
		{file: find("acme/*/users/*/*.json"), how: "garbled", account: true},
	} {
		t.Run(filepath.Base(tc.file)+"/"+tc.how, func(t *testing.T) {
			orig, err := os.ReadFile(filepath.Join(seed, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			data := damage.File(orig)[tc.how]
			dir := t.TempDir()
			if err := os.CopyFS(dir, os.DirFS(seed)); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, tc.file)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			orders := len(l.p.Orders())
			l2 := newACMELab(t, dir, "www")
			l2.start()
			got := l2.served("www") // verified against pebble's root: a whole chain
			if tc.account {
				if !got.Equal(www) || len(l.p.Orders()) != orders {
					t.Error("a damaged account changed the certificate served")
				}
				if b, _ := os.ReadFile(path); !bytes.Equal(b, data) {
					t.Error("the damaged account file was changed")
				}
				for _, want := range []string{"level=ERROR", "ACME account", "Restore " + filepath.Dir(path) + " from a backup"} {
					if !strings.Contains(l2.logs.String(), want) {
						t.Errorf("the log does not say %q:\n%s", want, l2.logs)
					}
				}
				return
			}
			if got.Equal(www) || len(l.p.Orders()) != orders+1 {
				t.Errorf("want a new certificate from one order, got %d order(s)", len(l.p.Orders())-orders)
			}
			asides, _ := filepath.Glob(filepath.Dir(path) + ".damaged-*")
			if len(asides) != 1 {
				t.Fatalf("moved aside: %v", asides)
			}
			if b, _ := os.ReadFile(filepath.Join(asides[0], filepath.Base(path))); !bytes.Equal(b, data) {
				t.Error("the damaged copy is not kept as it was")
			}
			if !strings.Contains(l2.logs.String(), "damaged_copy="+asides[0]) && !strings.Contains(l2.logs.String(), asides[0]) {
				t.Errorf("the log does not name %s:\n%s", asides[0], l2.logs)
			}
		})
	}
}
