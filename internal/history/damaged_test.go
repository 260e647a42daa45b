package history

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/statefile/damage"
)

// A damaged history.db (power loss, a worn SD card) never keeps the
// gateway from starting: it is moved aside, never deleted, the log says
// what was lost and where the copy is, and a new history starts.
func TestOpenDamaged(t *testing.T) {
	// The file of a gateway's first seconds, as `labgate serve` left it,
	// and one of a few days of results.
	serve, err := os.ReadFile("testdata/serve-history.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("from serve", func(t *testing.T) { testOpenDamaged(t, serve) })
	t.Run("days", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), FileName)
		s, err := Open(path, Options{Now: func() time.Time { return t0.Add(72 * time.Hour) }})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Record(every("vault", t0, time.Minute, 3*24*60, Up, 20*time.Millisecond)...); err != nil {
			t.Fatal(err)
		}
		s.Close()
		db, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		testOpenDamaged(t, db)
	})
}

func testOpenDamaged(t *testing.T, db []byte) {
	for name, data := range damage.Bolt(db) {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			var log bytes.Buffer
			now := time.Date(2026, 11, 26, 2, 3, 4, 0, time.UTC)
			s, err := Open(path, Options{Now: func() time.Time { return now }, Log: slog.New(slog.NewTextHandler(&log, nil))})
			if err != nil {
				t.Fatalf("a damaged history keeps the status page without one: %v", err)
			}
			aside := path + ".damaged-20261126T020304Z"
			if s.Damaged() != aside {
				t.Errorf("Damaged() = %q, want %q", s.Damaged(), aside)
			}
			if err := s.Record(Sample{Service: "vault", Time: now, State: Up}); err != nil {
				t.Errorf("the new history records nothing: %v", err)
			}
			if err := s.Compact(); err != nil {
				t.Errorf("compacting the new history: %v", err)
			}
			s.Close()
			if kept, err := os.ReadFile(aside); err != nil || !bytes.Equal(kept, data) {
				t.Errorf("the damaged copy is not kept as it was: %v", err)
			}
			for _, want := range []string{"level=ERROR", "history is lost", "damaged_copy=" + aside} {
				if !strings.Contains(log.String(), want) {
					t.Errorf("log lacks %q:\n%s", want, log.String())
				}
			}
			s, err = Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.Damaged() != "" {
				t.Errorf("the new history is taken for damaged")
			}
		})
	}
}
