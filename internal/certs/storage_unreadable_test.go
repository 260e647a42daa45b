package certs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/statefile/damage"
)

// A file of ACME storage that labgate may not read (restored from a
// backup as another user, labgate run once as root) is not damage: the
// certificate is not moved aside and ordered again (which would not help
// and spends the CA's rate limit), and what is reported says so.
func TestCheckStorageUnreadable(t *testing.T) {
	files := []string{
		"certificates/ca.example-directory/www.lab.test/www.lab.test.crt",
		"certificates/ca.example-directory/www.lab.test/www.lab.test.key",
		"acme/ca.example-directory/users/me@lab.test/me.key",
	}
	for _, name := range files {
		t.Run(filepath.Base(name), func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "acme")
			writeStorage(t, root)
			path := filepath.Join(root, filepath.FromSlash(name))
			var got []StorageDamage
			damage.Unreadable(t, root, path, func() { got = checkStorage(root, time.Now()) })
			if len(got) != 1 || got[0].Path != path || !got[0].Unreadable || got[0].Aside != "" {
				t.Fatalf("found %+v, want %s unreadable and kept", got, path)
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("the file is not where it was: %v", err)
			}
			if a := got[0].Advice(); !strings.Contains(a, "may not read "+path) || strings.Contains(a, "damaged") {
				t.Errorf("advice: %s", a)
			}
		})
	}
}
