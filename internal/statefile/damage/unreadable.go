package damage

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// nobody is the user Unreadable runs as when the tests run as root.
const nobody = 65534

// Unreadable runs fn as a user that owns the tree at root but may not read
// path, a file in it: a state_dir restored from a backup as another user,
// or labgate run once as root. Running as root, which reads everything, the
// tree (and the test's directories above it) change owner and mode, and fn
// runs on a thread of its own whose file system user is that owner; fn's
// file work must happen on fn's goroutine.
func Unreadable(t testing.TB, root, path string, fn func()) {
	t.Helper()
	if err := os.Chmod(path, 0o200); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		fn()
		return
	}
	// The directories above root that t.TempDir made are root's, 0700.
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
	if err := asFileUser(nobody, fn); err != nil {
		t.Skipf("cannot run as another user: %v", err)
	}
}
