package health

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// switchable is a checker whose outcome the test sets.
type switchable struct {
	mu   sync.Mutex
	err  error
	runs atomic.Int32
}

func (s *switchable) Check(context.Context) error {
	s.runs.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// round waits, inside a synctest bubble, for the next run of the check and
// for what it set off to settle.
func (s *switchable) round() {
	n := s.runs.Load()
	for s.runs.Load() == n {
		time.Sleep(time.Second)
	}
	synctest.Wait()
}

func (s *switchable) set(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

func stateOf(m *Monitor, service string) State {
	s, _ := m.Snapshot().Service(service)
	return s.State
}

// Thresholds, on a fake clock: unknown until the first result, down after
// `failures` failed rounds, up again after `successes` passing ones.
func TestMonitorThresholds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &switchable{}
		changes := atomic.Int32{}
		reg := prometheus.NewRegistry()
		m := New(Options{Registerer: reg, OnChange: func() { changes.Add(1) }})
		m.Update([]string{"vault"}, []Target{{Service: "vault", Check: "http", Scope: Inside, Interval: 10 * time.Second,
			Timeout: time.Second, Failures: 3, Successes: 2, Checker: c, Spec: "v1"}})
		if got := stateOf(m, "vault"); got != Unknown {
			t.Fatalf("before any check: %s", got)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); m.Run(ctx) }()

		c.round()
		if got := stateOf(m, "vault"); got != Up {
			t.Fatalf("after a pass: %s", got)
		}
		c.set(errors.New("connection refused"))
		for i := 1; i <= 3; i++ {
			c.round()
			want := Up
			if i == 3 {
				want = Down
			}
			if got := stateOf(m, "vault"); got != want {
				t.Fatalf("after %d failures: %s, want %s", i, got, want)
			}
		}
		s, _ := m.Snapshot().Service("vault")
		if s.Cause != CauseChecks || s.Reason != "inside check http: connection refused" {
			t.Errorf("cause %q, reason %q", s.Cause, s.Reason)
		}
		if v := gauge(m.metrics.state.WithLabelValues("vault", "down")); v != 1 {
			t.Errorf("labgate_service_state down = %v", v)
		}
		if v := gauge(m.metrics.success.WithLabelValues("vault", "http", "inside")); v != 0 {
			t.Errorf("labgate_check_success = %v", v)
		}
		c.set(nil)
		c.round()
		if got := stateOf(m, "vault"); got != Down {
			t.Fatalf("after one pass: %s, want still down", got)
		}
		c.round()
		if got := stateOf(m, "vault"); got != Up {
			t.Fatalf("after two passes: %s", got)
		}
		if n := changes.Load(); n != 3 {
			t.Errorf("%d changes told, want 3 (up, down, up)", n)
		}

		// A reload with the same check keeps its state; a changed one starts over.
		m.Update([]string{"vault"}, []Target{{Service: "vault", Check: "http", Scope: Inside, Interval: 10 * time.Second,
			Timeout: time.Second, Failures: 3, Successes: 2, Checker: &switchable{}, Spec: "v1"}})
		if got := stateOf(m, "vault"); got != Up {
			t.Errorf("after a reload without changes: %s", got)
		}
		m.Update([]string{"vault"}, []Target{{Service: "vault", Check: "http", Scope: Inside, Interval: 10 * time.Second,
			Timeout: time.Second, Failures: 3, Successes: 2, Checker: &switchable{}, Spec: "v2"}})
		if got := stateOf(m, "vault"); got != Unknown {
			t.Errorf("after the check changed: %s", got)
		}
		cancel()
		<-done
	})
}

// The checks of a target are spread over its interval and jittered by
// 10%: never two runs closer than 0.9 intervals.
func TestMonitorJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var at []time.Time
		c := checkerFunc(func(context.Context) error {
			mu.Lock()
			at = append(at, time.Now())
			mu.Unlock()
			return nil
		})
		m := New(Options{})
		m.Update([]string{"a"}, []Target{{Service: "a", Check: "tcp", Scope: Inside, Interval: 10 * time.Second, Timeout: time.Second,
			Failures: 1, Successes: 1, Checker: c}})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); m.Run(ctx) }()
		start := time.Now()
		time.Sleep(10 * time.Minute)
		cancel()
		<-done
		if len(at) < 55 || len(at) > 67 {
			t.Errorf("%d runs in 10 minutes at a 10s interval", len(at))
		}
		if at[0].Sub(start) >= 10*time.Second {
			t.Errorf("first run after %s", at[0].Sub(start))
		}
		distinct := map[time.Duration]bool{}
		for i := 1; i < len(at); i++ {
			d := at[i].Sub(at[i-1])
			distinct[d] = true
			if d < 9*time.Second || d > 11*time.Second {
				t.Errorf("runs %s apart", d)
			}
		}
		if len(distinct) < 5 {
			t.Errorf("waits barely vary: %v", distinct)
		}
	})
}

func gauge(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		return -1
	}
	return m.GetGauge().GetValue()
}

type checkerFunc func(context.Context) error

func (f checkerFunc) Check(ctx context.Context) error { return f(ctx) }

func status(scope Scope, state State, failingSince time.Time, err string) *running {
	r := &running{t: Target{Check: "http", Scope: scope}}
	r.status = CheckStatus{Check: "http", Scope: scope, State: state, FailingSince: failingSince, LastFailure: failingSince, LastError: err}
	if err != "" {
		r.status.Last = &Result{State: Down, Error: err}
	}
	return r
}

// failedAgain records another failure of r at t.
func failedAgain(r *running, t time.Time) *running {
	r.status.LastFailure = t
	return r
}

// derive tells a broken service from a broken exposure, and a broken
// exposure of one service from a broken relay path.
func TestDerive(t *testing.T) {
	t1 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	relayDown := &CheckStatus{State: Down, LastFailure: t1.Add(time.Second), Last: &Result{State: Down, Error: "connection refused"}}
	relayBack := &CheckStatus{State: Up, LastFailure: t1.Add(time.Second), Last: &Result{State: Up}}
	relayOld := &CheckStatus{State: Up, LastFailure: t1.Add(-time.Hour), Last: &Result{State: Up}}
	tests := []struct {
		name    string
		targets []*running
		relay   *CheckStatus
		traffic Traffic
		want    string
	}{
		{"nothing known", []*running{status(Inside, Unknown, time.Time{}, "")}, nil, Traffic{}, "unknown"},
		{"up", []*running{status(Inside, Up, time.Time{}, "")}, nil, Traffic{}, "up"},
		{"inside down", []*running{status(Inside, Down, t1, "refused"), status(Outside, Down, t1, "refused")}, relayDown, Traffic{},
			"down checks: inside check http: refused"},
		{"exposure broken", []*running{status(Inside, Up, time.Time{}, ""), status(Outside, Down, t1, "status 502")}, relayOld, Traffic{},
			"degraded exposure: exposure broken, inside checks pass: outside check http: status 502"},
		{"relay broken", []*running{status(Inside, Up, time.Time{}, ""), status(Outside, Down, t1, "refused")}, relayDown, Traffic{},
			"degraded relay: relay path broken: connection refused"},
		{"relay back, check not yet", []*running{status(Inside, Up, time.Time{}, ""), status(Outside, Down, t1, "refused")}, relayBack, Traffic{},
			"degraded relay: relay path broken"},
		// Failing since before the relay path broke, and again after it
		// came back: the service's own exposure is broken.
		{"relay back, check failing again", []*running{status(Inside, Up, time.Time{}, ""), failedAgain(status(Outside, Down, t1, "status 502"), t1.Add(time.Minute))},
			relayBack, Traffic{}, "degraded exposure: exposure broken, inside checks pass: outside check http: status 502"},
		{"outside only", []*running{status(Outside, Down, t1, "status 500")}, relayOld, Traffic{},
			"down exposure: outside check http: status 500"},
		{"failing traffic", []*running{status(Inside, Up, time.Time{}, "")}, nil, Traffic{Requests: 100, Errors: 40, MeanLatency: time.Millisecond},
			"degraded traffic: 40% of 100 requests failed in the last minute (mean latency 1ms)"},
		{"traffic alone", nil, nil, Traffic{Requests: 100, Errors: 1}, "up"},
		{"slow traffic", nil, nil, Traffic{Requests: 100, MeanLatency: 3 * time.Second, MaxLatency: time.Second},
			"degraded traffic: slow: 100 requests in the last minute took 3s on average (max_latency 1s)"},
		{"slow, but few", nil, nil, Traffic{Requests: 5, MeanLatency: 3 * time.Second, MaxLatency: time.Second}, "up"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, cause, reason := derive(tt.targets, tt.relay, tt.traffic)
			got := strings.TrimSpace(state.String() + " " + strings.TrimSpace(cause+": "+reason))
			got = strings.TrimSuffix(got, " :")
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPassive(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	p := newPassive(func() time.Time { return now })
	obs := p.For("vault")
	for i := range 30 {
		code := 200
		if i%3 == 0 {
			code = 502
		}
		obs(code, 10*time.Millisecond)
	}
	if tr := p.traffic("vault"); tr.Requests != 30 || tr.Errors != 10 || !tr.Failing() || tr.MeanLatency != 10*time.Millisecond {
		t.Errorf("traffic %+v", tr)
	}
	p.SetMaxLatency(map[string]time.Duration{"vault": 5 * time.Millisecond})
	if tr := p.traffic("vault"); !tr.Slow() {
		t.Errorf("10ms on average with max_latency 5ms: %+v", tr)
	}
	now = now.Add(2 * time.Minute)
	if tr := p.traffic("vault"); tr.Requests != 0 {
		t.Errorf("a minute later: %+v", tr)
	}
}

// OnResult is told every result with its service's state after it.
func TestMonitorOnResult(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &switchable{}
		var mu sync.Mutex
		var got []string
		m := New(Options{OnResult: func(r Result, s State) {
			mu.Lock()
			got = append(got, r.Service+"/"+r.Check+"/"+string(r.Scope)+" "+r.State.String()+" -> "+s.String())
			mu.Unlock()
		}})
		m.Update([]string{"vault"}, []Target{{Service: "vault", Check: "http", Scope: Inside, Interval: 10 * time.Second,
			Timeout: time.Second, Failures: 2, Successes: 1, Checker: c, Spec: "v1"}})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); m.Run(ctx) }()
		c.round()
		c.set(errors.New("connection refused"))
		c.round()
		c.round()
		cancel()
		<-done
		want := []string{
			"vault/http/inside up -> up",
			"vault/http/inside down -> up", // one failure of two
			"vault/http/inside down -> down",
		}
		mu.Lock()
		defer mu.Unlock()
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("results:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}
