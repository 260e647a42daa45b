package speedtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/statefile/damage"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var loopback = netip.MustParseAddr("127.0.0.1")

// relay serves Handler on addr (host:0) to the sources allow accepts,
// counting the payload bytes it sends and takes.
type relay struct {
	*httptest.Server
	down, up atomic.Int64
}

func startRelay(t *testing.T, addr string, allow func(netip.Addr) bool) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{}
	h := Handler(allow)
	r.Server = &httptest.Server{Listener: ln, Config: &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			req.Body = &countingReader{r: req.Body, n: &r.up}
			h.ServeHTTP(&countingWriter{ResponseWriter: w, n: &r.down}, req)
		}),
	}}
	r.Start()
	t.Cleanup(r.Close)
	return r
}

type countingReader struct {
	r io.ReadCloser
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func only(a netip.Addr) func(netip.Addr) bool { return func(b netip.Addr) bool { return a == b } }

func TestHandler(t *testing.T) {
	r := startRelay(t, "127.0.0.1:0", only(loopback))
	tests := []struct {
		name    string
		method  string
		path    string
		body    io.Reader
		size    int64 // the request's ContentLength: -1 sends it chunked
		status  int
		want    string // the body; "" compares its length with wantLen
		wantLen int
	}{
		{"ping", "GET", "/ping", nil, 0, 204, "", 0},
		{"down nothing", "GET", "/down?bytes=0", nil, 0, 200, "", 0},
		{"down some", "GET", "/down?bytes=100000", nil, 0, 200, "", 100000},
		{"down the most", "GET", "/down?bytes=67108864", nil, 0, 200, "", MaxBytes},
		{"down too much", "GET", "/down?bytes=67108865", nil, 0, 400, "bytes: want a number from 0 to 67108864\n", 0},
		{"down no count", "GET", "/down", nil, 0, 400, "bytes: want a number from 0 to 67108864\n", 0},
		{"down negative", "GET", "/down?bytes=-1", nil, 0, 400, "bytes: want a number from 0 to 67108864\n", 0},
		{"up", "POST", "/up", strings.NewReader(strings.Repeat("x", 12345)), 12345, 200, "12345\n", 0},
		{"up chunked", "POST", "/up", strings.NewReader(strings.Repeat("x", 777)), -1, 200, "777\n", 0},
		{"up announced too big", "POST", "/up", &payload{buf: make([]byte, 4096), left: MaxBytes + 1}, MaxBytes + 1, 413, "at most 67108864 bytes\n", 0},
		{"up too big chunked", "POST", "/up", &payload{buf: make([]byte, 4096), left: MaxBytes + 1}, -1, 413, "at most 67108864 bytes\n", 0},
		{"wrong method", "POST", "/down?bytes=1", nil, 0, 405, "Method Not Allowed\n", 0},
		{"unknown path", "GET", "/", nil, 0, 404, "404 page not found\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, r.URL+tt.path, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = tt.size
			resp, err := r.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status {
				t.Errorf("%s %s: status %d %q, want %d", tt.method, tt.path, resp.StatusCode, trim(string(b)), tt.status)
			}
			if tt.want != "" && string(b) != tt.want || tt.want == "" && len(b) != tt.wantLen {
				t.Errorf("%s %s: body of %d bytes %q, want %q or %d bytes", tt.method, tt.path, len(b), trim(string(b)), tt.want, tt.wantLen)
			}
		})
	}
}

func trim(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// Only the allowed source is served: every path answers 403 to anyone else,
// before reading or sending any payload.
func TestHandlerRefusesOtherSources(t *testing.T) {
	var asked atomic.Value
	r := startRelay(t, "127.0.0.1:0", func(a netip.Addr) bool { asked.Store(a); return a == netip.MustParseAddr("100.101.102.103") })
	for _, req := range []*http.Request{
		httptest.NewRequest("GET", r.URL+"/ping", nil),
		httptest.NewRequest("GET", r.URL+"/down?bytes=1000000", nil),
		httptest.NewRequest("POST", r.URL+"/up", bytes.NewReader(make([]byte, 1000))),
	} {
		req.RequestURI = ""
		resp, err := r.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 403 || string(b) != "forbidden: only the gateway measures the relay path\n" {
			t.Errorf("%s %s from 127.0.0.1: %d %q, want 403", req.Method, req.URL.Path, resp.StatusCode, b)
		}
	}
	if got := asked.Load(); got != loopback {
		t.Errorf("allow was asked about %v, want the client's 127.0.0.1", got)
	}
	// What the relay sent is the three refusals, and it read nothing.
	if d, u := r.down.Load(), r.up.Load(); d != 3*int64(len("forbidden: only the gateway measures the relay path\n")) || u != 0 {
		t.Errorf("a refused source moved payload: %d bytes down, %d up", d, u)
	}
}

// A measurement against the real handler, from the one allowed source,
// gives positive numbers and moves exactly the budget.
func TestProberMeasures(t *testing.T) {
	from := netip.MustParseAddr("127.0.0.7")
	r := startRelay(t, "127.0.0.1:0", only(from))
	const budget = 1 << 20
	p := New(Options{URL: r.URL + "/", LocalAddr: from, Budget: budget})
	res := p.Measure(context.Background())
	if !res.OK() || res.RTT <= 0 || res.Down <= 0 || res.Up <= 0 {
		t.Fatalf("measurement %+v, want positive latency and throughput", res)
	}
	if res.RTT > 1 {
		t.Errorf("loopback round trip of %gs", res.RTT)
	}
	if res.Bytes != budget {
		t.Errorf("result says %d bytes moved, want the budget %d", res.Bytes, budget)
	}
	// The handler's own count: half the budget each way; pings have no
	// body, and the upload's answer is its length, "524288\n".
	if d, u := r.down.Load(), r.up.Load(); d != budget/2+7 || u != budget/2 {
		t.Errorf("the relay sent %d and took %d bytes, want %d+7 and %d (the budget, half each way)", d, u, budget/2, budget/2)
	}

	// From any other source, the relay refuses and the measurement says why.
	p = New(Options{URL: r.URL, LocalAddr: netip.MustParseAddr("127.0.0.8"), Budget: budget})
	res = p.Measure(context.Background())
	if want := "latency: the relay answered 403 Forbidden: forbidden: only the gateway measures the relay path"; res.Err != want || res.Bytes != 0 {
		t.Errorf("from another source: %+v, want error %q", res, want)
	}
}

// When the relay does not answer, Run records a failure with the reason,
// exports it and goes on; it stops when its context is done.
func TestProberRecordsFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	var logs bytes.Buffer
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	p := New(Options{URL: "http://" + dead, Interval: time.Second, Metrics: m, Now: func() time.Time { return now },
		Log: slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, "a failed measurement", func() bool { return len(p.History()) > 0 })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	h := p.History()
	if h[0].OK() || !strings.HasPrefix(h[0].Err, "latency: ") || !strings.Contains(h[0].Err, "connection refused") || !h[0].Time.Equal(now) {
		t.Errorf("recorded %+v, want a failure at %v saying the connection was refused", h[0], now)
	}
	if got := metric(t, reg, "labgate_relay_path_runs_total", "result", "failure"); got < 1 {
		t.Errorf("labgate_relay_path_runs_total{result=failure} = %g", got)
	}
	if got := metric(t, reg, "labgate_relay_path_last_run_timestamp_seconds"); got != float64(now.Unix()) {
		t.Errorf("last run timestamp %g, want %d", got, now.Unix())
	}
	// No success yet: the latency and throughput series are absent, not 0.
	for _, name := range []string{"labgate_relay_path_rtt_seconds", "labgate_relay_path_throughput_bytes_per_second"} {
		if _, ok := series(t, reg, name); ok {
			t.Errorf("%s exported before any success", name)
		}
	}
}

// Run records successes on schedule, and a stop in the middle of a
// measurement records nothing.
func TestProberRun(t *testing.T) {
	r := startRelay(t, "127.0.0.1:0", only(loopback))
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	p := New(Options{URL: r.URL, Interval: time.Second, Budget: 128 << 10, Metrics: m})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, "a measurement", func() bool { return len(p.History()) > 0 })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if h := p.History(); !h[0].OK() {
		t.Errorf("measurement %+v", h[0])
	}
	if got := metric(t, reg, "labgate_relay_path_bytes_total"); got != 128<<10 {
		t.Errorf("labgate_relay_path_bytes_total = %g, want %d", got, 128<<10)
	}
	if got := metric(t, reg, "labgate_relay_path_throughput_bytes_per_second", "direction", "up"); got <= 0 {
		t.Errorf("up throughput %g", got)
	}

	// A relay that stalls: cancelling Run mid-download returns promptly and keeps nothing.
	stall := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/ping" {
			w.WriteHeader(204)
			return
		}
		w.Write([]byte("x"))
		w.(http.Flusher).Flush()
		select {
		case <-req.Context().Done():
		case <-stall:
		}
	}))
	defer slow.Close()
	defer close(stall)
	p = New(Options{URL: slow.URL, Interval: time.Second})
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- p.Run(ctx) }()
	time.Sleep(500 * time.Millisecond) // the first run starts after 100ms and stalls
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context was done")
	}
	if h := p.History(); len(h) != 0 {
		t.Errorf("a measurement cut short by stopping was recorded: %+v", h)
	}
}

// The history keeps the newest Samples results, survives a new Prober
// through the state file, and a broken file starts an empty history.
func TestHistoryBoundedAndPersisted(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "state", "relay-path.json")
	p := New(Options{URL: "http://127.0.0.1:1", Samples: 3, StateFile: file})
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var all []Result
	for i := range 5 {
		r := Result{Time: t0.Add(time.Duration(i) * 10 * time.Minute), RTT: 0.01 * float64(i+1), Down: 1e6, Up: 2e6, Bytes: 4 << 20}
		if i == 3 {
			r = Result{Time: r.Time, Err: "download: unexpected EOF", Bytes: 1000}
		}
		all = append(all, r)
		p.record(r)
	}
	if diff := cmp.Diff(all[2:], p.History()); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("state file: %v, mode %v", err, fi.Mode())
	}
	if ents, _ := os.ReadDir(filepath.Dir(file)); len(ents) != 1 {
		t.Errorf("temporary files left beside the state file: %v", ents)
	}

	// A new Prober (a restart) with fewer samples keeps the newest; its
	// metrics show the newest success, and its next run waits for the interval.
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	q := New(Options{URL: "http://127.0.0.1:1", Samples: 2, StateFile: file, Metrics: m})
	if diff := cmp.Diff(all[3:], q.History()); diff != "" {
		t.Errorf("history after restart (-want +got):\n%s", diff)
	}
	if got := metric(t, reg, "labgate_relay_path_rtt_seconds"); got != all[4].RTT {
		t.Errorf("restored rtt %g, want %g", got, all[4].RTT)
	}
	if got := metric(t, reg, "labgate_relay_path_runs_total", "result", "success"); got != 0 {
		t.Errorf("restored results were counted again: %g", got)
	}

	// The file is JSON a status page can read.
	var s struct {
		Version int
		Results []map[string]any
	}
	b, _ := os.ReadFile(file)
	if err := json.Unmarshal(b, &s); err != nil || s.Version != 1 || len(s.Results) != 3 || s.Results[1]["error"] != "download: unexpected EOF" {
		t.Errorf("state file %s: %v", b, err)
	}

	// A damaged file (power loss, a worn SD card) is moved aside, never
	// deleted; the history starts empty and the log says where the copy is.
	good, _ := os.ReadFile(file)
	for name, data := range damage.File(good) {
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		now := time.Date(2026, 11, 26, 2, 3, 4, 0, time.UTC)
		q = New(Options{URL: "http://127.0.0.1:1", StateFile: file, Now: func() time.Time { return now },
			Log: slog.New(slog.NewTextHandler(&logs, nil))})
		aside := file + ".damaged-20261126T020304Z"
		if len(q.History()) != 0 || q.Damaged() != aside {
			t.Errorf("%s: history %v, damaged copy %q", name, q.History(), q.Damaged())
		}
		for _, want := range []string{"level=ERROR", "are lost", "damaged_copy=" + aside} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("%s: log lacks %q:\n%s", name, want, logs.String())
			}
		}
		if kept, err := os.ReadFile(aside); err != nil || !bytes.Equal(kept, data) {
			t.Errorf("%s: the damaged copy is not kept as it was: %v", name, err)
		}
		if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: the damaged file is still in place: %v", name, err)
		}
		os.Remove(aside)
	}

	// One labgate may not read is left as it is, and not written over.
	if err := os.WriteFile(file, good, 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	damage.Unreadable(t, dir, file, func() {
		q = New(Options{URL: "http://127.0.0.1:1", StateFile: file, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	})
	q.record(Result{Time: t0.Add(time.Hour), RTT: 0.5})
	if b, err := os.ReadFile(file); err != nil || !bytes.Equal(b, good) {
		t.Errorf("the unreadable file was changed: %v", err)
	}
	if q.Damaged() != "" || !strings.Contains(logs.String(), "cannot be read") {
		t.Errorf("damaged copy %q, log:\n%s", q.Damaged(), logs.String())
	}
}

func TestNextDelay(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	const iv = 10 * time.Minute
	tests := []struct {
		name string
		last time.Time
		r    float64
		want time.Duration
	}{
		{"first run comes soon", time.Time{}, 0.5, 10 * time.Second},
		{"just measured, no jitter", now, 0.5, iv},
		{"just measured, earliest", now, 0, 9 * time.Minute},
		{"just measured, later", now, 0.75, 10*time.Minute + 30*time.Second},
		{"measured 4m ago", now.Add(-4 * time.Minute), 0.5, 6 * time.Minute},
		{"overdue after a restart", now.Add(-time.Hour), 0.5, 10 * time.Second},
		{"clock went back", now.Add(time.Hour), 0.5, iv},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextDelay(now, tt.last, iv, tt.r); got != tt.want {
				t.Errorf("nextDelay = %v, want %v", got, tt.want)
			}
		})
	}
	if got := nextDelay(now, time.Time{}, time.Second, 0.5); got != 100*time.Millisecond {
		t.Errorf("first run at a 1s interval after %v, want 100ms", got)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// metric is the value of the series name{labels...} in reg, 0 when absent.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	v, _ := series(t, reg, name, labels...)
	return v
}

func series(t *testing.T, reg *prometheus.Registry, name string, labels ...string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}
				if !found {
					continue next
				}
			}
			return m.GetGauge().GetValue() + m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}
