// Package statefile keeps the files labgate writes to state_dir whole
// through power losses, and lets their owners tell a damaged file from a
// missing one. Homelab gateways run on small machines whose SD cards and
// cheap SSDs truncate or garble files when the power goes; a damaged file
// must not keep the gateway from serving.
//
//   - WriteFile replaces a file atomically: a temporary file in the same
//     directory, written and fsynced, renamed over the old one, and the
//     directory fsynced so that the rename itself survives a power loss.
//   - MoveAside renames a damaged file to NAME.damaged-<UTC time>, so that
//     its owner can start afresh without deleting what may still be
//     rescued.
//   - CheckBolt reads a bbolt database through without letting bbolt's
//     panics or a fault on a truncated file's mapping end the process.
package statefile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrDamaged marks the errors of CheckBolt that say the file is damaged
// (as opposed to unreadable: a permission, a full disk).
var ErrDamaged = errors.New("damaged")

// WriteFile writes data to path atomically and durably: a reader (or a
// start after a power loss) finds the old content or the new one, never a
// part of either. The file gets perm.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // after the rename there is nothing left to remove
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// WriteNew is WriteFile for a file that must not exist yet (a CA's key,
// say): it fails with an error wrapping fs.ErrExist rather than replace
// one, and a reader never sees path half-written.
func WriteNew(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	// A hard link fails if path exists, unlike rename.
	err = os.Link(tmp, path)
	if err == nil || errors.Is(err, fs.ErrExist) {
		if err == nil {
			err = SyncDir(filepath.Dir(path))
		}
		return err
	}
	// The file system has no hard links: create path exclusively instead.
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = out.Write(data)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(path, perm)
	}
	if err == nil {
		err = SyncDir(filepath.Dir(path))
	}
	return err
}

// writeTemp writes data, fsynced and with perm, to a new temporary file
// beside path and returns its name.
func writeTemp(path string, data []byte, perm fs.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", err
	}
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// SyncDir fsyncs a directory, so that the names created, renamed or
// removed in it survive a power loss.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// AsideSuffix starts the suffix of a file moved aside; the UTC time of
// the move follows it, as 20060102T150405Z.
const AsideSuffix = ".damaged-"

// IsAside reports whether name (or a path) is that of a copy MoveAside made.
func IsAside(name string) bool { return strings.Contains(name, AsideSuffix) }

// asideLayout is the time in the name of a file moved aside.
const asideLayout = "20060102T150405Z"

// Aside reads the name (or path) of a file MoveAside made: the name it had
// and when it was moved (zero when the name does not say). ok is false for
// any other name.
func Aside(name string) (original string, at time.Time, ok bool) {
	original, suffix, ok := strings.Cut(name, AsideSuffix)
	if !ok {
		return name, time.Time{}, false
	}
	if len(suffix) >= len(asideLayout) {
		at, _ = time.Parse(asideLayout, suffix[:len(asideLayout)])
	}
	return original, at, true
}

// MoveAside renames the damaged file at path to path.damaged-<now, UTC>
// (with a counter when that name is taken) and returns the new name. The
// file is never deleted: what it holds may still be rescued.
func MoveAside(path string, now time.Time) (string, error) {
	base := path + AsideSuffix + now.UTC().Format(asideLayout)
	aside := base
	for i := 2; ; i++ {
		// Only a name that is taken asks for the next one: any other
		// answer (a name too long for the file system) is Rename's to
		// report.
		if _, err := os.Lstat(aside); err != nil {
			break
		}
		aside = fmt.Sprintf("%s-%d", base, i)
	}
	if err := os.Rename(path, aside); err != nil {
		return "", fmt.Errorf("moving the damaged %s aside: %w", path, err)
	}
	if err := SyncDir(filepath.Dir(path)); err != nil {
		return aside, fmt.Errorf("moving the damaged %s aside: %w", path, err)
	}
	return aside, nil
}

// CheckBolt reads the bbolt database at path through, if there is one:
// it opens it read-only, reads every bucket, key and value, and runs
// bbolt's consistency check, without letting bbolt's panics or a fault on
// a truncated file's mapping end the process. A missing file is nil; a
// damaged one (an empty file included) an error wrapping ErrDamaged;
// anything else (the file cannot be read) another error.
//
// A panic inside bolt.Open leaves the file open, with its shared lock, for
// the life of the process: the caller is expected to move a damaged file
// aside (MoveAside), so that a new database at path is another file, with
// a lock of its own.
func CheckBolt(path string) error {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Size() == 0 {
		return fmt.Errorf("%w: the file is empty", ErrDamaged)
	}
	// Readable at all? A permission problem is not damage.
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	f.Close()
	return checkBolt(path)
}

// checkBolt opens and reads the database. A truncated file is mapped past
// its end: reading there is a fault, which SetPanicOnFault turns into a
// panic of this goroutine that recover takes, like bbolt's own panics.
func checkBolt(path string) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	var db *bolt.DB
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				_ = db.Close()
			}
			err = fmt.Errorf("%w: %v", ErrDamaged, r)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if errors.Is(err, berrors.ErrTimeout) {
		return fmt.Errorf("%s is in use by another process", path)
	}
	if err != nil {
		db = nil
		return fmt.Errorf("%w: %v", ErrDamaged, err)
	}
	err = db.View(func(tx *bolt.Tx) error {
		// Every page in reach, read here first: a fault in bbolt's check
		// below (it runs in a goroutine of its own) could not be taken.
		if err := tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return readBucket(b) }); err != nil {
			return err
		}
		for cerr := range tx.Check() {
			if err == nil {
				err = cerr
			}
		}
		return err
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrDamaged, err)
	}
	return nil
}

// readBucket reads every key and value of b and of its nested buckets.
func readBucket(b *bolt.Bucket) error {
	var sink byte
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			if nb := b.Bucket(k); nb != nil {
				return readBucket(nb)
			}
			return nil
		}
		for _, c := range v {
			sink ^= c
		}
		_ = sink
		return nil
	})
}
