package history

import (
	"path/filepath"
	"testing"
	"time"
)

// TestResultFromAClockAheadDoesNotBlankTheHistory: one result stamped a
// year ahead (a clock set right afterwards) must not make the results that
// follow cover nothing.
func TestResultFromAClockAheadDoesNotBlankTheHistory(t *testing.T) {
	now := time.Date(2026, 6, 30, 12, 0, 0, 0, time.UTC)
	s, err := Open(filepath.Join(t.TempDir(), FileName), Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Record(Sample{Service: "blog", Time: now.AddDate(1, 0, 0), State: Up}); err != nil {
		t.Fatal(err)
	}
	for m := 0; m <= 60; m++ {
		if err := s.Record(Sample{Service: "blog", Time: now.Add(time.Duration(m) * time.Minute), State: Down}); err != nil {
			t.Fatal(err)
		}
	}
	fine, err := s.Fine("blog", "", now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got := Merge(fine).Seconds[Down]; got != 3600 {
		t.Errorf("an hour down recorded as %d s down", got)
	}
}
