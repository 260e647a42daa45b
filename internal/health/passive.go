package health

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Passive signals come from the requests the gateway proxies: for each
// service, the requests, failed requests (5xx) and their total duration
// over the last minute, in six 10-second buckets.
const (
	passiveBucket  = 10 * time.Second
	passiveBuckets = 6
	// A minute with at least passiveMinRequests requests of which at least
	// passiveMaxErrorRatio failed makes the service degraded.
	passiveMinRequests   = 20
	passiveMaxErrorRatio = 0.25
)

// Traffic sums a service's proxied requests over the last minute.
type Traffic struct {
	Requests    int64         `json:"requests"`
	Errors      int64         `json:"errors"` // answered 5xx
	MeanLatency time.Duration `json:"mean_latency"`
	// MaxLatency is the service's bound on latency (the smallest
	// max_latency of its checks); 0: none.
	MaxLatency time.Duration `json:"max_latency,omitempty"`
}

// Failing reports whether enough requests failed to call the service degraded.
func (t Traffic) Failing() bool {
	return t.Requests >= passiveMinRequests && float64(t.Errors) >= passiveMaxErrorRatio*float64(t.Requests)
}

// Slow reports whether enough requests took longer than MaxLatency on
// average to call the service degraded.
func (t Traffic) Slow() bool {
	return t.MaxLatency > 0 && t.Requests >= passiveMinRequests && t.MeanLatency > t.MaxLatency
}

func (t Traffic) String() string {
	switch {
	case t.Requests == 0:
		return "no requests in the last minute"
	case t.Slow() && !t.Failing():
		return fmt.Sprintf("slow: %d requests in the last minute took %s on average (max_latency %s)",
			t.Requests, t.MeanLatency.Round(time.Millisecond), t.MaxLatency)
	}
	return fmt.Sprintf("%d%% of %d requests failed in the last minute (mean latency %s)",
		t.Errors*100/t.Requests, t.Requests, t.MeanLatency.Round(time.Millisecond))
}

// Passive collects the gateway's per-request signals.
type Passive struct {
	now func() time.Time
	mu  sync.Mutex
	by  map[string]*window
}

func newPassive(now func() time.Time) *Passive {
	return &Passive{now: now, by: map[string]*window{}}
}

// For returns the function the gateway calls for every request service
// answers (gateway.Options.Observe). It is cheap: a few atomic additions.
func (p *Passive) For(service string) func(code int, d time.Duration) {
	p.mu.Lock()
	w := p.by[service]
	if w == nil {
		w = &window{}
		p.by[service] = w
	}
	p.mu.Unlock()
	return func(code int, d time.Duration) { w.add(p.now(), code, d) }
}

// keep forgets the services not in names.
func (p *Passive) keep(names map[string]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for n := range p.by {
		if !names[n] {
			delete(p.by, n)
		}
	}
}

func (p *Passive) traffic(service string) Traffic {
	p.mu.Lock()
	w := p.by[service]
	p.mu.Unlock()
	if w == nil {
		return Traffic{}
	}
	t := w.sum(p.now())
	t.MaxLatency = time.Duration(w.maxLatency.Load())
	return t
}

// SetMaxLatency sets each service's bound on the mean latency of its
// requests (0 or absent: none).
func (p *Passive) SetMaxLatency(limits map[string]time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, w := range p.by {
		w.maxLatency.Store(int64(limits[name]))
	}
	for name, d := range limits {
		if p.by[name] == nil {
			w := &window{}
			w.maxLatency.Store(int64(d))
			p.by[name] = w
		}
	}
}

type window struct {
	buckets    [passiveBuckets]bucket
	maxLatency atomic.Int64 // time.Duration
}

type bucket struct {
	epoch    atomic.Int64 // the 10-second period the counts belong to
	requests atomic.Int64
	errors   atomic.Int64
	nanos    atomic.Int64
}

func (w *window) add(now time.Time, code int, d time.Duration) {
	e := now.UnixNano() / int64(passiveBucket)
	b := &w.buckets[e%passiveBuckets]
	if old := b.epoch.Load(); old != e && b.epoch.CompareAndSwap(old, e) {
		// A new period: start the bucket over. A request counted by another
		// goroutine in between may be lost; the ratio does not care.
		b.requests.Store(0)
		b.errors.Store(0)
		b.nanos.Store(0)
	}
	b.requests.Add(1)
	if code >= 500 && code <= 599 {
		b.errors.Add(1)
	}
	b.nanos.Add(int64(d))
}

func (w *window) sum(now time.Time) Traffic {
	e := now.UnixNano() / int64(passiveBucket)
	var t Traffic
	var nanos int64
	for i := range w.buckets {
		b := &w.buckets[i]
		if be := b.epoch.Load(); be > e-passiveBuckets && be <= e {
			t.Requests += b.requests.Load()
			t.Errors += b.errors.Load()
			nanos += b.nanos.Load()
		}
	}
	if t.Requests > 0 {
		t.MeanLatency = time.Duration(nanos / t.Requests)
	}
	return t
}
