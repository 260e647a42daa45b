package certs

import (
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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
			asOtherUser(t, root, path, func() { got = checkStorage(root, time.Now()) })
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

// asOtherUser runs fn as a user that owns the tree at root but may not
// read path. As root (which reads everything) the files change owner and
// fn runs on a thread whose file system user is that owner.
func asOtherUser(t *testing.T, root, path string, fn func()) {
	t.Helper()
	if err := os.Chmod(path, 0o200); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		fn()
		return
	}
	const nobody = 65534
	// The test's directories above root (t.TempDir's) are root's, 0700.
	for dir := filepath.Dir(root); len(dir) > len(os.TempDir()); dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, nobody, nobody)
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		// Never unlocked: the thread ends with the goroutine, its file
		// system user with it.
		runtime.LockOSThread()
		if err := unix.Setfsuid(nobody); err != nil {
			done <- err
			return
		}
		fn()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
