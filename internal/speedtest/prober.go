package speedtest

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Result is one measurement of the relay path.
type Result struct {
	Time time.Time `json:"time"` // when it started
	// RTT is the median round trip of a few tiny requests on one kept-alive
	// connection, in seconds.
	RTT float64 `json:"rtt_seconds,omitempty"`
	// Down (relay to gateway, the way responses to public clients go) and Up
	// (gateway to relay, the way requests come in), in bytes per second: the
	// bytes moved over the time from sending the request to the last byte,
	// less one round trip.
	Down float64 `json:"down_bytes_per_second,omitempty"`
	Up   float64 `json:"up_bytes_per_second,omitempty"`
	// Bytes is the payload moved, both ways: what the run cost of the budget.
	Bytes int64 `json:"bytes"`
	// Err says why the measurement failed; "" when it succeeded.
	Err string `json:"error,omitempty"`
}

// OK reports whether the measurement succeeded.
func (r Result) OK() bool { return r.Err == "" }

// Options configure a Prober.
type Options struct {
	// URL of the relay's Handler, as http://100.90.0.1:9182/.
	URL string
	// LocalAddr is the address to connect from: the gateway's VPN address,
	// the only source the relay answers. Zero lets the system choose.
	LocalAddr netip.Addr
	// Interval between the starts of two measurements, each moved by up to
	// 10% either way at random (default 10m).
	Interval time.Duration
	// Budget is the payload of one measurement in bytes, half down and half
	// up (default 4 MiB; at most 2*MaxBytes).
	Budget int
	// Samples is how many results History keeps (default 1008).
	Samples int
	// Timeout bounds one measurement (default the smaller of Interval and 2m).
	Timeout time.Duration
	// StateFile keeps the history across restarts ("" keeps it in memory).
	StateFile string
	// Log receives failed measurements and state file problems (default: discard).
	Log *slog.Logger
	// Metrics, if set, receive every result.
	Metrics *Metrics
	// Now is the clock of result times (default time.Now).
	Now func() time.Time
}

// Prober measures the relay path on a schedule. Create it with New.
type Prober struct {
	opts   Options
	base   string // URL without a trailing slash
	client *http.Client
	tr     *http.Transport
	upBuf  []byte
	// damaged is where New moved a damaged state file, if it did.
	damaged string

	mu      sync.Mutex
	history []Result // oldest first, at most Samples
}

const rttPings = 5

// New returns a Prober with the history of opts.StateFile, if any.
func New(opts Options) *Prober {
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Minute
	}
	if opts.Budget <= 0 {
		opts.Budget = 4 << 20
	}
	opts.Budget = min(opts.Budget, 2*MaxBytes)
	if opts.Samples <= 0 {
		opts.Samples = 1008
	}
	if opts.Timeout <= 0 {
		opts.Timeout = min(opts.Interval, 2*time.Minute)
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	if opts.LocalAddr.IsValid() {
		dialer.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(opts.LocalAddr, 0))
	}
	tr := &http.Transport{
		Proxy:               nil, // never through an HTTP proxy from the environment: the VPN path is the point
		DialContext:         dialer.DialContext,
		DisableCompression:  true,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     time.Minute,
	}
	p := &Prober{
		opts:   opts,
		base:   strings.TrimSuffix(opts.URL, "/"),
		client: &http.Client{Transport: tr},
		tr:     tr,
		upBuf:  make([]byte, 64<<10),
	}
	_, _ = rand.Read(p.upBuf)
	p.history = p.load()
	if m := opts.Metrics; m != nil {
		m.restore(p.history)
	}
	return p
}

// Run measures every interval until ctx is done; the first measurement comes
// soon after start, unless the history has one younger than the interval.
// A failed measurement is recorded, never returned: Run returns nil when ctx
// is done.
func (p *Prober) Run(ctx context.Context) error {
	defer p.tr.CloseIdleConnections()
	for {
		last := time.Time{}
		if h := p.History(); len(h) > 0 {
			last = h[len(h)-1].Time
		}
		t := time.NewTimer(nextDelay(p.opts.Now(), last, p.opts.Interval, mrand.Float64()))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		r := p.Measure(ctx)
		if ctx.Err() != nil {
			return nil // stopped in the middle: not the relay's fault
		}
		p.record(r)
	}
}

// nextDelay is how long to wait for the next measurement: the interval moved
// by up to 10% either way (r in [0,1) picks where) after the last one, but at
// least a tenth of the interval (at most 10s) and at most the interval.
func nextDelay(now, last time.Time, interval time.Duration, r float64) time.Duration {
	soon := min(interval/10, 10*time.Second)
	next := interval + time.Duration((r*0.2-0.1)*float64(interval))
	if last.IsZero() {
		return soon
	}
	return min(max(last.Add(next).Sub(now), soon), next)
}

// Measure runs one measurement now, without recording it.
func (p *Prober) Measure(ctx context.Context) Result {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	defer p.tr.CloseIdleConnections() // the next run, minutes away, starts afresh
	r := Result{Time: p.opts.Now()}
	rtt, err := p.rtt(ctx)
	if err != nil {
		r.Err = "latency: " + err.Error()
		return r
	}
	r.RTT = rtt.Seconds()
	down := p.opts.Budget / 2
	n, d, err := p.download(ctx, down)
	r.Bytes += n
	if err != nil {
		r.Err = "download: " + err.Error()
		return r
	}
	r.Down = rate(n, d, rtt)
	n, d, err = p.upload(ctx, p.opts.Budget-down)
	r.Bytes += n
	if err != nil {
		r.Err = "upload: " + err.Error()
		return r
	}
	r.Up = rate(n, d, rtt)
	return r
}

// rate is n bytes over d less the round trip the request itself took.
func rate(n int64, d, rtt time.Duration) float64 {
	if d > rtt {
		d -= rtt
	}
	return float64(n) / max(d, time.Microsecond).Seconds()
}

// rtt is the median of a few pings after one that opens the connection.
func (p *Prober) rtt(ctx context.Context) (time.Duration, error) {
	var rtts []time.Duration
	for i := range rttPings + 1 {
		start := time.Now()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/ping", nil)
		if err != nil {
			return 0, err
		}
		if _, err := p.do(req, http.StatusNoContent); err != nil {
			return 0, err
		}
		if i > 0 {
			rtts = append(rtts, time.Since(start))
		}
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2], nil
}

func (p *Prober) download(ctx context.Context, size int) (int64, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/down?bytes="+strconv.Itoa(size), nil)
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, statusError(resp)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	d := time.Since(start)
	if err == nil && n != int64(size) {
		err = fmt.Errorf("got %d bytes of %d", n, size)
	}
	return n, d, err
}

func (p *Prober) upload(ctx context.Context, size int) (int64, time.Duration, error) {
	body := &payload{buf: p.upBuf, left: int64(size)}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/up", body)
	if err != nil {
		return 0, 0, err
	}
	req.ContentLength = int64(size)
	req.Header.Set("Content-Type", "application/octet-stream")
	start := time.Now()
	got, err := p.do(req, http.StatusOK)
	d := time.Since(start)
	sent := int64(size) - body.left
	if err != nil {
		return sent, d, err
	}
	if n, err := strconv.ParseInt(strings.TrimSpace(got), 10, 64); err != nil || n != int64(size) {
		return sent, d, fmt.Errorf("the relay took %q bytes of %d", strings.TrimSpace(got), size)
	}
	return sent, d, nil
}

// do sends req and returns its (short) body if the status is want.
func (p *Prober) do(req *http.Request, want int) (string, error) {
	resp, err := p.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		return "", statusError(resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	return string(b), err
}

func statusError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	msg := strings.TrimSpace(string(b))
	if msg == "" {
		return fmt.Errorf("the relay answered %s", resp.Status)
	}
	return fmt.Errorf("the relay answered %s: %s", resp.Status, msg)
}

// payload reads left bytes from buf, over and over.
type payload struct {
	buf  []byte
	left int64
}

func (b *payload) Read(p []byte) (int, error) {
	if b.left == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(int64(len(p)), b.left)], b.buf)
	b.left -= int64(n)
	return n, nil
}

// History returns the results kept, oldest first.
func (p *Prober) History() []Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.history)
}

// record keeps r, drops what is beyond Samples, exports r and saves the history.
func (p *Prober) record(r Result) {
	if r.OK() {
		p.opts.Log.Debug("relay path measured", "rtt", time.Duration(r.RTT*float64(time.Second)),
			"down_mbit_s", r.Down*8/1e6, "up_mbit_s", r.Up*8/1e6, "bytes", r.Bytes)
	} else {
		p.opts.Log.Warn("relay path measurement failed", "url", p.base, "error", r.Err)
	}
	if m := p.opts.Metrics; m != nil {
		m.observe(r)
	}
	p.mu.Lock()
	p.history = append(p.history, r)
	if over := len(p.history) - p.opts.Samples; over > 0 {
		p.history = slices.Delete(p.history, 0, over)
	}
	h := slices.Clone(p.history)
	p.mu.Unlock()
	if err := p.save(h); err != nil {
		p.opts.Log.Warn("relay path history not saved", "error", err)
	}
}
