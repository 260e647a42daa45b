package statefile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/labgate/labgate/internal/statefile/damage"
)

func TestCheckBolt(t *testing.T) {
	// An alerts.db as `labgate serve` left it after its first minutes.
	good, err := os.ReadFile("testdata/serve-alerts.db")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := CheckBolt(filepath.Join(dir, "missing.db")); err != nil {
		t.Errorf("a missing file: %v", err)
	}
	path := filepath.Join(dir, "good.db")
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckBolt(path); err != nil {
		t.Errorf("a whole file: %v", err)
	}
	for name, data := range damage.Bolt(good) {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "alerts.db")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			for range 2 { // the file is not left locked: a second look works the same
				if err := CheckBolt(path); !errors.Is(err, ErrDamaged) {
					t.Errorf("CheckBolt = %v, want ErrDamaged", err)
				}
			}
			if b, err := os.ReadFile(path); err != nil || string(b) != string(data) {
				t.Errorf("the file was changed: %v", err)
			}
			if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
				t.Errorf("left behind: %v", ents)
			}
			// Moved aside, a new database at the same path opens at once:
			// nothing of the damaged file holds its lock.
			if _, err := MoveAside(path, time.Now()); err != nil {
				t.Fatal(err)
			}
			db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
			if err != nil {
				t.Fatalf("a new database after moving the damaged one aside: %v", err)
			}
			db.Close()
		})
	}
	// A whole database that another process holds (a second labgate serve
	// on the same state_dir) is in use, not damaged: moved aside, it would
	// take the other's state.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckBolt(path); err == nil || errors.Is(err, ErrDamaged) {
		t.Errorf("a file in use: %v, want an error that is not ErrDamaged", err)
	}
	db.Close()
	// Nor is one that labgate may not read, even as root.
	damage.Unreadable(t, dir, path, func() { err = CheckBolt(path) })
	if err == nil || errors.Is(err, ErrDamaged) {
		t.Errorf("an unreadable file: %v, want an error that is not ErrDamaged", err)
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	for _, content := range []string{"one", "two, longer than one"} {
		if err := WriteFile(path, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || string(b) != content {
			t.Errorf("read %q, %v; want %q", b, err, content)
		}
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	if err := WriteFile(filepath.Join(dir, "no", "such", "dir"), nil, 0o600); err == nil {
		t.Error("wrote into a missing directory")
	}
}

func TestWriteNew(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "root.key")
	if err := WriteNew(path, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteNew(path, []byte("second"), 0o600); !errors.Is(err, fs.ErrExist) {
		t.Errorf("writing over an existing file: %v, want fs.ErrExist", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "first" {
		t.Errorf("the file holds %q, want the first content kept", b)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
}

func TestMoveAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "history.db")
	now := time.Date(2026, 11, 26, 3, 4, 5, 0, time.FixedZone("CET", 3600))
	var got []string
	for _, content := range []string{"first", "second"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		aside, err := MoveAside(path, now)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(aside); string(b) != content {
			t.Errorf("%s holds %q, want %q", aside, b, content)
		}
		got = append(got, filepath.Base(aside))
	}
	want := []string{"history.db.damaged-20261126T020405Z", "history.db.damaged-20261126T020405Z-2"}
	if got[0] != want[0] || got[1] != want[1] {
		t.Errorf("moved to %v, want %v", got, want)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there: %v", path, err)
	}
	if _, err := MoveAside(path, now); err == nil {
		t.Error("moved a missing file")
	}
}

// A name that cannot take the suffix (a certificate's directory is named
// after its domain, up to 253 characters) is an error, not a search for a
// free name that never ends.
func TestMoveAsideNameTooLong(t *testing.T) {
	path := filepath.Join(t.TempDir(), strings.Repeat("a", 240))
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := MoveAside(path, time.Now())
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("moved aside to a name longer than the file system allows")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("MoveAside did not return")
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the file is gone: %v", err)
	}
}

func TestAside(t *testing.T) {
	moved, err := MoveAside(writeTempFile(t), time.Date(2026, 11, 26, 3, 4, 5, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	original, at, ok := Aside(filepath.Base(moved))
	if !ok || original != "history.db" || !at.Equal(time.Date(2026, 11, 26, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("Aside(%q) = %q, %v, %v; want history.db, the time of the move", moved, original, at, ok)
	}
	if _, _, ok := Aside("history.db"); ok {
		t.Error("a name MoveAside did not make is read as one")
	}
	for _, name := range []string{"x.damaged-2026", "x.damaged-2026112xT120000Z"} {
		if _, at, ok := Aside(name); !ok || !at.IsZero() {
			t.Errorf("Aside(%q): %v, %v; want a copy without a time", name, at, ok)
		}
	}
}

func writeTempFile(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "history.db")
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
