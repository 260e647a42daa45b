package history

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func open(t *testing.T, now func() time.Time) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "state", FileName), Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// every returns samples of one series every step from start for n steps.
func every(service string, start time.Time, step time.Duration, n int, st State, lat time.Duration) []Sample {
	out := make([]Sample, n)
	for i := range out {
		out[i] = Sample{Service: service, Time: start.Add(time.Duration(i) * step), State: st, Latency: lat}
	}
	return out
}

func TestDaysCountStatesNotGapsNorUnknown(t *testing.T) {
	s := open(t, nil)
	var smps []Sample
	// Day 0: up all day, every minute.
	smps = append(smps, every("web", t0, time.Minute, 24*60, Up, 20*time.Millisecond)...)
	// Day 1: 12 h up, then 2 h down, then 1 h unknown, then nothing (labgate stopped).
	d1 := t0.Add(Day)
	smps = append(smps, every("web", d1, time.Minute, 12*60, Up, 10*time.Millisecond)...)
	smps = append(smps, every("web", d1.Add(12*time.Hour), time.Minute, 2*60, Down, 5*time.Second)...)
	smps = append(smps, every("web", d1.Add(14*time.Hour), time.Minute, 60, Unknown, 0)...)
	// Day 3: a single result after a long silence: it covers nothing.
	smps = append(smps, Sample{Service: "web", Time: t0.Add(3*Day + time.Hour), State: Down})
	if err := s.RecordAll(smps); err != nil {
		t.Fatal(err)
	}
	days, err := s.Days("web", "", t0.Add(3*Day+5*time.Hour), 5)
	if err != nil {
		t.Fatal(err)
	}
	type day struct {
		Start         time.Time
		Up, Down, Unk uint32
		Uptime        float64
		Worst         State
	}
	var got []day
	for _, d := range days {
		got = append(got, day{d.Start, d.Seconds[Up], d.Seconds[Down], d.Seconds[Unknown], d.Uptime(), d.Worst()})
	}
	want := []day{
		{t0.Add(-Day), 0, 0, 0, -1, Unknown},
		// The first result of the series covers nothing; the day's last minute rolls into day 1.
		{t0, 24*60*60 - 60, 0, 0, 1, Up},
		{t0.Add(Day), 12 * 3600, 2 * 3600, 3600, 12.0 / 14, Down},
		{t0.Add(2 * Day), 0, 0, 0, -1, Unknown},
		{t0.Add(3 * Day), 0, 0, 0, -1, Down},
	}
	// Day 3 knows no seconds, yet its one result was down: Worst reads seconds only.
	want[4].Worst = Unknown
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("days (-want +got):\n%s", diff)
	}
	// Latency is kept for up results only: the 5 s timeouts are not in it.
	if d := days[2]; d.Max() != 10*time.Millisecond || d.Min() != 10*time.Millisecond || d.Count != 12*60 {
		t.Errorf("day 1 latency min %v max %v count %d, want 10ms, 10ms, 720", d.Min(), d.Max(), d.Count)
	}
	sum, err := s.Summary("web", "", t0.Add(3*Day), 4)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sum.Uptime(), float64(24*3600-60+12*3600)/float64(24*3600-60+14*3600); got != want {
		t.Errorf("4-day uptime %v, want %v", got, want)
	}
	if sum.Avg() <= 10*time.Millisecond || sum.Avg() >= 20*time.Millisecond {
		t.Errorf("4-day average latency %v, want between 10 and 20 ms", sum.Avg())
	}
}

func TestFineAndRaw(t *testing.T) {
	s := open(t, nil)
	var smps []Sample
	for i := range 30 { // one result every 30 s for 15 minutes, latency rising
		smps = append(smps, Sample{Service: "db", Check: "tcp", Time: t0.Add(time.Duration(i) * 30 * time.Second), State: Up, Latency: time.Duration(i+1) * time.Millisecond})
	}
	if err := s.RecordAll(smps); err != nil {
		t.Fatal(err)
	}
	fine, err := s.Fine("db", "tcp", t0, t0.Add(14*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(fine) != 3 {
		t.Fatalf("%d five-minute buckets, want 3", len(fine))
	}
	for i, b := range fine {
		if b.Count != 10 || b.Min() != time.Duration(10*i+1)*time.Millisecond || b.Max() != time.Duration(10*i+10)*time.Millisecond {
			t.Errorf("bucket %d: count %d min %v max %v", i, b.Count, b.Min(), b.Max())
		}
	}
	raw, err := s.Raw("db", "tcp", t0.Add(time.Minute), t0.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	want := []Result{
		{t0.Add(60 * time.Second), Up, 3 * time.Millisecond},
		{t0.Add(90 * time.Second), Up, 4 * time.Millisecond},
		{t0.Add(120 * time.Second), Up, 5 * time.Millisecond},
	}
	if diff := cmp.Diff(want, raw); diff != "" {
		t.Errorf("raw (-want +got):\n%s", diff)
	}
	// Another check of the same service is another series.
	if other, _ := s.Raw("db", "", t0, t0.Add(time.Hour)); len(other) != 0 {
		t.Errorf("the service's own series has %d results, want none", len(other))
	}
	last, ok, err := s.Last("db", "tcp")
	if err != nil || !ok || !last.Time.Equal(t0.Add(29*30*time.Second)) {
		t.Errorf("Last = %v %v %v", last, ok, err)
	}
}

func TestCompactKeepsRollUps(t *testing.T) {
	now := t0
	s := open(t, func() time.Time { return now })
	// Three days of results, every 5 minutes, for two services.
	for _, svc := range []string{"a", "b"} {
		if err := s.RecordAll(every(svc, t0, 5*time.Minute, 3*24*12, Up, time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	now = t0.Add(3 * Day)
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	raw, _ := s.Raw("a", "", t0, now)
	if first := raw[0].Time; first.Before(now.Add(-48 * time.Hour)) {
		t.Errorf("raw results from %v survive a compaction at %v", first, now)
	}
	if len(raw) != 48*12 {
		t.Errorf("%d raw results left, want %d", len(raw), 48*12)
	}
	days, _ := s.Days("a", "", t0, 1)
	if days[0].Seconds[Up] != 24*3600-300 {
		t.Errorf("day 0 after compaction: %d s up, want %d", days[0].Seconds[Up], 24*3600-300)
	}
	// 15 days later the five-minute buckets are gone, the daily ones stay;
	// after 401 days everything is gone, and so are the series' buckets.
	now = t0.Add(18 * Day)
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	if fine, _ := s.Fine("a", "", t0, t0.Add(Day)); fine[10].Count != 0 {
		t.Errorf("five-minute buckets survive 15 days")
	}
	if days, _ := s.Days("a", "", t0, 1); days[0].Count == 0 {
		t.Errorf("daily buckets lost after 18 days")
	}
	now = t0.Add(410 * Day)
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	if days, _ := s.Days("a", "", t0, 1); days[0].Count != 0 {
		t.Errorf("daily buckets survive 410 days")
	}
}

func TestRunCompactsOnTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		s, err := Open(filepath.Join(dir, FileName), Options{CompactEvery: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.RecordAll(every("a", time.Now(), time.Minute, 60, Up, time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- s.Run(ctx) }()
		time.Sleep(49 * time.Hour) // past the raw retention: a timer run deletes them
		synctest.Wait()
		if raw, _ := s.Raw("a", "", time.Now().Add(-100*time.Hour), time.Now()); len(raw) != 0 {
			t.Errorf("%d raw results older than 48 h left after Run's timer", len(raw))
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// TestSizeStaysSmall simulates 20 days of 10 services (a smaller, fast case
// of bench/history: 100 services for a year) and checks the file stays small
// and stops growing once compaction runs.
func TestSizeStaysSmall(t *testing.T) {
	now := t0
	s := open(t, func() time.Time { return now })
	const services, interval = 10, time.Minute
	var sizes []int64
	for day := range 20 {
		var smps []Sample
		for i := range services {
			for m := range 24 * 60 / int(interval/time.Minute) {
				st := Up
				if m%97 == 0 {
					st = Down
				}
				smps = append(smps, Sample{Service: "svc-" + string(rune('a'+i)), Time: t0.Add(time.Duration(day)*Day + time.Duration(m)*interval), State: st, Latency: time.Duration(m%50+1) * time.Millisecond})
			}
		}
		if err := s.RecordAll(smps); err != nil {
			t.Fatal(err)
		}
		now = t0.Add(time.Duration(day+1) * Day)
		if err := s.Compact(); err != nil {
			t.Fatal(err)
		}
		n, _ := s.Size()
		sizes = append(sizes, n)
	}
	// Per service: 48 h raw + 14 days of 5-minute buckets + 20 days: well under 1 MiB.
	if last := sizes[len(sizes)-1]; last > services<<20 {
		t.Errorf("%d bytes for %d services after 20 days, want under %d", last, services, services<<20)
	}
	// Past the 14 days of five-minute buckets, it no longer grows (freed pages are reused).
	if sizes[19] > sizes[15]*11/10 {
		t.Errorf("still growing after the retention: day 15 %d bytes, day 19 %d", sizes[15], sizes[19])
	}
	t.Logf("sizes by day: %v", sizes)
}

// TestRecordConcurrent records from many goroutines at once, as checks of
// different services finish together: bbolt batches them, none is lost.
func TestRecordConcurrent(t *testing.T) {
	s := open(t, nil)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			for j := range 10 {
				err := s.Record(Sample{Service: fmt.Sprintf("svc-%d", i), Time: t0.Add(time.Duration(j) * 30 * time.Second), State: Up, Latency: time.Millisecond})
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for i := range 20 {
		raw, err := s.Raw(fmt.Sprintf("svc-%d", i), "", t0, t0.Add(time.Hour))
		if err != nil || len(raw) != 10 {
			t.Errorf("svc-%d: %d results, %v", i, len(raw), err)
		}
		if fine, _ := s.Fine(fmt.Sprintf("svc-%d", i), "", t0, t0); fine[0].Seconds[Up] != 270 || fine[0].Count != 10 {
			t.Errorf("svc-%d: five-minute bucket %+v", i, fine[0])
		}
	}
	if err := s.Record(Sample{Time: t0}); err == nil {
		t.Error("a sample without a service was recorded")
	}
}
