package daemon

import (
	"log/slog"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/health"
	"github.com/labgate/labgate/internal/history"
)

// BenchmarkRecordResults is the history's cost of the health monitor's
// results: each op is one check result recorded (its check's series and
// its service's), from as many goroutines as checks run at once.
//
//	go test -run '^$' -bench RecordResults -benchtime 3s ./internal/daemon
func BenchmarkRecordResults(b *testing.B) {
	st, err := history.Open(filepath.Join(b.TempDir(), history.FileName), history.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	sp := newStatusPage(nil)
	sp.hist.Store(st)
	sp.log.Store(slog.New(slog.DiscardHandler))
	var n atomic.Int64
	start := time.Now()
	b.SetParallelism(16) // checks finishing together
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			sp.record(health.Result{Service: "svc" + strconv.Itoa(int(i%1000)), Check: "http", Scope: health.Inside,
				State: health.Up, Latency: time.Millisecond, Time: start.Add(time.Duration(i) * time.Second)}, health.Up)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "results/s")
}
