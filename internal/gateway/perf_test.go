package gateway

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/labgate/labgate/internal/config"
)

// perfSetup is a 1 KiB backend, a gateway in front of it on loopback, and a
// keep-alive client for each.
type perfSetup struct {
	direct, proxied string
	client          *http.Client
}

func newPerfSetup(tb testing.TB, access, reverseProxy bool) *perfSetup {
	body := strings.Repeat("x", 1024)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, body)
	}))
	tb.Cleanup(be.Close)
	opts := Options{Metrics: NewMetrics(prometheus.NewRegistry()), reverseProxyOnly: reverseProxy}
	if access {
		opts.Access = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	cfg := &config.Config{Services: []*config.Service{{
		Name: "bench", Hosts: []string{"bench.example.com"}, Path: "/", Expose: config.Public,
		Backends: []*url.URL{mustURL(tb, be.URL)},
	}}}
	g, err := New(cfg, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(g.Close)
	gw := httptest.NewServer(g.Handler(config.Public))
	tb.Cleanup(gw.Close)
	tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	tb.Cleanup(tr.CloseIdleConnections)
	return &perfSetup{direct: be.URL, proxied: gw.URL, client: &http.Client{Transport: tr}}
}

func (p *perfSetup) get(tb testing.TB, base string) {
	req, _ := http.NewRequest("GET", base+"/some/path?q=1", nil)
	req.Host = "bench.example.com"
	res, err := p.client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || n != 1024 {
		tb.Fatalf("status %d, %d bytes", res.StatusCode, n)
	}
}

// cost runs n sequential requests to base and returns bytes allocated and
// CPU time used by the whole process (client, gateway and backend).
func (p *perfSetup) cost(tb testing.TB, base string, n int) (alloc, mallocs uint64, cpu time.Duration) {
	runtime.GC()
	var m0, m1 runtime.MemStats
	var r0, r1 syscall.Rusage
	runtime.ReadMemStats(&m0)
	syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	for range n {
		p.get(tb, base)
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
	runtime.ReadMemStats(&m1)
	cpu = time.Duration(r1.Utime.Nano()+r1.Stime.Nano()-r0.Utime.Nano()-r0.Stime.Nano()) * time.Nanosecond
	return m1.TotalAlloc - m0.TotalAlloc, m1.Mallocs - m0.Mallocs, cpu
}

// TestProxyAllocations measures what the gateway allocates per proxied
// request over the real loopback path: the same requests sent directly to
// the backend are the baseline, so the difference is the gateway's server
// side, its handler and its upstream transport.
func TestProxyAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	const n = 2000
	const budget = 10 << 10
	for _, tt := range []struct {
		name         string
		access       bool
		reverseProxy bool
	}{{"no access log", false, false}, {"access log", true, false}, {"reverse proxy path", false, true}} {
		t.Run(tt.name, func(t *testing.T) {
			p := newPerfSetup(t, tt.access, tt.reverseProxy)
			for range 200 { // warm pools and connections
				p.get(t, p.direct)
				p.get(t, p.proxied)
			}
			best := uint64(1 << 62)
			for range 3 { // the least of three: GC and pool timing add noise
				direct, _, _ := p.cost(t, p.direct, n)
				proxied, _, _ := p.cost(t, p.proxied, n)
				best = min(best, (proxied-min(direct, proxied))/n)
			}
			t.Logf("gateway allocates %d bytes per proxied request", best)
			if raceEnabled {
				t.Skip("allocation budget not checked under the race detector")
			}
			if best > budget {
				t.Errorf("gateway allocates %d bytes per proxied request, budget %d", best, budget)
			}
		})
	}
}

// BenchmarkProxy reports allocations per request through the whole
// in-process path (client, gateway, backend) for direct and proxied
// requests, and the gateway's own share: proxy-B/op and proxy-µs/op are the
// proxied cost minus the direct cost, measured in the same run.
func BenchmarkProxy(b *testing.B) {
	for _, tt := range []struct {
		name         string
		access       bool
		reverseProxy bool
	}{{"plain", false, false}, {"access-log", true, false}, {"reverseproxy", false, true}, {"reverseproxy-access-log", true, true}} {
		b.Run(tt.name, func(b *testing.B) {
			p := newPerfSetup(b, tt.access, tt.reverseProxy)
			for range 200 {
				p.get(b, p.direct)
				p.get(b, p.proxied)
			}
			n := max(b.N, 1000)
			directAlloc, directMallocs, directCPU := p.cost(b, p.direct, n)
			b.ReportAllocs()
			b.ResetTimer()
			runtime.GC()
			var m0, m1 runtime.MemStats
			var r0, r1 syscall.Rusage
			runtime.ReadMemStats(&m0)
			syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
			for b.Loop() {
				p.get(b, p.proxied)
			}
			syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
			runtime.ReadMemStats(&m1)
			b.StopTimer()
			cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
			perAlloc := float64(m1.TotalAlloc-m0.TotalAlloc)/float64(b.N) - float64(directAlloc)/float64(n)
			perCPU := float64(cpu.Microseconds())/float64(b.N) - float64(directCPU.Microseconds())/float64(n)
			perMallocs := float64(m1.Mallocs-m0.Mallocs)/float64(b.N) - float64(directMallocs)/float64(n)
			b.ReportMetric(perAlloc, "proxy-B/op")
			b.ReportMetric(perMallocs, "proxy-allocs/op")
			b.ReportMetric(perCPU, "proxy-µs/op")
		})
	}
}
