// Command status measures the health history and the status page:
//
//   - the size of state_dir/history.db after a simulated year of -services
//     services: results every -interval, one transaction per simulated day,
//     then for the last two days (what the raw results, kept 48 h, hold)
//     every -recent, one transaction per tick as the daemon writes them.
//     The roll-ups do not depend on the interval; the raw results do, and
//     they are written for real. Compacted once a simulated day (Store.Run
//     does it every hour);
//   - the time to render the status page, /api/status and a badge with those
//     services and 90 days of history.
//
// Usage: go run ./bench/status [-services 100] [-days 365] [-interval 5m] [-recent 30s] [-renders 30]
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/labgate/labgate/internal/history"
	"github.com/labgate/labgate/internal/status"
)

func main() {
	services := flag.Int("services", 100, "services")
	days := flag.Int("days", 365, "simulated days")
	interval := flag.Duration("interval", 5*time.Minute, "time between results, before the last two days")
	recent := flag.Duration("recent", 30*time.Second, "time between results in the last two days (the raw results)")
	renders := flag.Int("renders", 30, "page renders to time")
	flag.Parse()
	if err := run(*services, *days, *interval, *recent, *renders); err != nil {
		fmt.Fprintln(os.Stderr, "bench/status:", err)
		os.Exit(1)
	}
}

func run(services, days int, interval, recent time.Duration, renders int) error {
	dir, err := os.MkdirTemp("", "labgate-bench-status")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := start
	st, err := history.Open(filepath.Join(dir, history.FileName), history.Options{Now: func() time.Time { return now }})
	if err != nil {
		return err
	}
	defer st.Close()

	names := make([]string, services)
	for i := range names {
		names[i] = fmt.Sprintf("service-%03d", i)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	fmt.Printf("simulating %d days of %d services: a result every %v, every %v in the last 2 days\n", days, services, interval, recent)
	t0 := time.Now()
	var results int
	for d := range days {
		step := interval
		if d >= days-2 {
			step = recent
		}
		dayStart := start.Add(time.Duration(d) * history.Day)
		var smps []history.Sample
		for i, n := range names {
			// A few services have an outage now and then: an hour down on a
			// random day, sometimes a degraded afternoon.
			outage := rng.IntN(60) == 0
			degraded := rng.IntN(40) == 0
			for tm := dayStart; tm.Before(dayStart.Add(history.Day)); tm = tm.Add(step) {
				s := history.Up
				switch {
				case outage && tm.Hour() == 3:
					s = history.Down
				case degraded && tm.Hour() >= 14 && tm.Hour() < 17:
					s = history.Degraded
				}
				lat := time.Duration(5+i%20)*time.Millisecond + time.Duration(rng.IntN(5000))*time.Microsecond
				smps = append(smps, history.Sample{Service: n, Time: tm, State: s, Latency: lat})
			}
		}
		if step == recent {
			// One transaction per tick, as the daemon's sampler writes.
			slices.SortStableFunc(smps, func(a, b history.Sample) int { return a.Time.Compare(b.Time) })
			for i := 0; i < len(smps); i += services {
				if err := st.RecordAll(smps[i:min(i+services, len(smps))]); err != nil {
					return err
				}
			}
		} else if err := st.RecordAll(smps); err != nil {
			return err
		}
		results += len(smps)
		now = dayStart.Add(history.Day)
		if err := st.Compact(); err != nil {
			return err
		}
		if (d+1)%30 == 0 || d == days-1 {
			size, _ := st.Size()
			fmt.Printf("  day %3d: %6.1f MB\n", d+1, float64(size)/1e6)
		}
	}
	size, _ := st.Size()
	fmt.Printf("history.db after %d days of %d services: %.1f MB (%d results recorded in %v)\n",
		days, services, float64(size)/1e6, results, time.Since(t0).Round(time.Second))

	// The page: every service, 90 days of bars and a 24-hour latency chart each.
	snap := status.Snapshot{Revision: "sha256:0123456789ab", Generation: 1}
	for i, n := range names {
		state := "up"
		if i%17 == 0 {
			state = "down"
		}
		snap.Services = append(snap.Services, status.Service{Name: n, Class: "private", Hosts: []string{n + ".example.org"},
			State: state, LastCheck: now.Add(-10 * time.Second), CertExpiry: now.Add(40 * history.Day)})
	}
	now = now.Add(-time.Minute) // inside the last simulated day
	srv := status.New(status.Options{Source: status.SourceFunc(func() status.Snapshot { return snap }), History: st, Now: func() time.Time { return now }})
	for _, target := range []string{"/", "/api/status", "/badge/service-001/uptime.svg?days=90", "/chart/service-001/latency.svg"} {
		var times []time.Duration
		var bytes int
		for range renders {
			rec := httptest.NewRecorder()
			t := time.Now()
			req := httptest.NewRequest("GET", target, nil)
			req.Header.Set("Accept-Encoding", "gzip")
			srv.ServeHTTP(rec, req)
			times = append(times, time.Since(t))
			if rec.Code != 200 {
				return fmt.Errorf("GET %s: %d", target, rec.Code)
			}
			bytes = rec.Body.Len()
		}
		plain := httptest.NewRecorder()
		srv.ServeHTTP(plain, httptest.NewRequest("GET", target, nil))
		slices.Sort(times)
		fmt.Printf("GET %-40s median %8v  p95 %8v  %8d bytes, %7d gzipped\n", target, times[len(times)/2].Round(10*time.Microsecond),
			times[len(times)*95/100].Round(10*time.Microsecond), plain.Body.Len(), bytes)
	}
	return nil
}
