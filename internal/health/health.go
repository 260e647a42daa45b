// Package health checks the lab's services and says what state each is in.
//
// A Monitor runs Targets: one check (http, tcp, tls, dns) of one service
// from one scope, inside (straight to the backend) or outside (the way a
// stranger reaches a public service: DNS, the relay, the gateway's public
// listener). Each target runs every interval, give or take 10% at random,
// and turns its results into a state with the service's thresholds: so
// many failures in a row make it down, so many passes bring it back. The
// service's state is derived from its targets and from passive signals of
// the real traffic the gateway proxies:
//
//   - down: an inside check is down (the service itself is broken);
//   - degraded: inside passes but an outside check is down (the exposure is
//     broken; the cause says whether the relay path is, for every public
//     service at once, or this service's alone), a check passes only with a
//     warning (slow, certificate expiring, one backend of several failing),
//     or too many proxied requests fail;
//   - up: every known check passes;
//   - unknown: nothing is known yet. Unknown never counts as downtime.
//
// The monitor keeps only the current state: history is the status page's,
// alerts are the alert package's. Both read Snapshots.
package health

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// State is the state of a check or a service.
type State uint8

// States. The zero State is Unknown.
const (
	Unknown State = iota
	Up
	Degraded
	Down
)

var stateNames = [...]string{"unknown", "up", "degraded", "down"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// MarshalText writes the state's name (JSON of snapshots).
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a state's name.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n == string(b) {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("unknown state %q", b)
}

// Scope says where a check runs from.
type Scope string

// Scopes.
const (
	Inside  Scope = "inside"  // straight to the backend
	Outside Scope = "outside" // through the public path: DNS and the relay
)

// Causes of a service's state, beside its name in alerts.
const (
	CauseChecks   = "checks"   // the service's own checks
	CauseExposure = "exposure" // inside passes, outside fails, the relay path works
	CauseRelay    = "relay"    // outside fails because the relay path does
	CauseTraffic  = "traffic"  // proxied requests fail
)

// RelayCheck is the name of the check of the relay path, reported with
// Service "" in results, snapshots and metrics.
const RelayCheck = "relay"

// Result is one run of one check.
type Result struct {
	Service string        `json:"service"`
	Check   string        `json:"check"`
	Scope   Scope         `json:"scope"`
	State   State         `json:"state"` // Up, Degraded (passed with a warning) or Down (failed)
	Latency time.Duration `json:"latency"`
	Error   string        `json:"error,omitempty"` // the failure or the warning
	Time    time.Time     `json:"time"`
}

// CheckStatus is a check's state after the thresholds.
type CheckStatus struct {
	Service   string    `json:"service"`
	Check     string    `json:"check"`
	Scope     Scope     `json:"scope"`
	State     State     `json:"state"`
	Since     time.Time `json:"since"`
	Last      *Result   `json:"last,omitempty"` // nil before the first run
	Failures  int       `json:"failures"`       // failed runs in a row
	Successes int       `json:"successes"`      // passing runs in a row
	// FailingSince is when the current run of failures began (zero after a pass).
	FailingSince time.Time `json:"failing_since,omitzero"`
	// LastFailure is when the check last failed, and LastError how.
	LastFailure time.Time `json:"last_failure,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
}

// ServiceStatus is a service's state, derived from its checks and traffic.
type ServiceStatus struct {
	Name    string        `json:"name"`
	State   State         `json:"state"`
	Since   time.Time     `json:"since"`
	Cause   string        `json:"cause,omitempty"`  // one of the Cause constants; "" when up or unknown
	Reason  string        `json:"reason,omitempty"` // for people: what fails and how
	Checks  []CheckStatus `json:"checks"`
	Traffic Traffic       `json:"traffic"`
}

// Snapshot is a read-only copy of every state the monitor knows.
type Snapshot struct {
	Time     time.Time       `json:"time"`
	Services []ServiceStatus `json:"services"` // in config order
	Relay    *CheckStatus    `json:"relay,omitempty"`
}

// Service returns the status of the named service.
func (s Snapshot) Service(name string) (ServiceStatus, bool) {
	for _, st := range s.Services {
		if st.Name == name {
			return st, true
		}
	}
	return ServiceStatus{}, false
}

// Target is one check of one service from one scope, as the Monitor runs it.
type Target struct {
	Service   string // "" for the relay path
	Check     string
	Scope     Scope
	Interval  time.Duration
	Timeout   time.Duration
	Failures  int // failed runs in a row before down
	Successes int // passing runs in a row before up again
	Checker   Checker
	// Prompt runs the first check at once, and the second at a random point
	// of the interval after it (so that targets still spread out), rather
	// than the first at a random point of the first interval: the gateway's
	// rotation waits for it.
	Prompt bool
	// Spec is what Checker was built from: on Update, a target with the same
	// key and an equal Spec (reflect.DeepEqual) keeps running and keeps its
	// state. nil Specs are never equal.
	Spec any
}

func (t Target) key() string { return t.Service + "/" + t.Check + "/" + string(t.Scope) }

// Options configure a Monitor.
type Options struct {
	Log *slog.Logger
	// Registerer receives the monitor's metrics; nil: none.
	Registerer prometheus.Registerer
	// OnChange is called, outside any lock, after the state, cause or
	// reason of a service or of the relay path changed.
	OnChange func()
	// OnResult, if set, is called, outside any lock, with every result of
	// every check (the relay path's has Service "") and the state of its
	// service after it (Unknown for the relay path): the history's input.
	OnResult func(res Result, service State)
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Monitor runs targets and keeps their states.
type Monitor struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	passive *Passive

	mu         sync.Mutex
	ctx        context.Context // set by Run
	wg         sync.WaitGroup
	targets    map[string]*running
	byService  map[string][]*running // targets by service ("" for the relay)
	order      []string              // service names, config order
	services   map[string]*serviceState
	relay      *running
	relayState State      // as last seen by recompute
	relayMu    sync.Mutex // one relay probe at a time
}

type running struct {
	t      Target
	status CheckStatus
	cancel context.CancelFunc
}

type serviceState struct {
	state    State
	since    time.Time
	cause    string
	reason   string
	exported bool // labgate_service_state was set (to state)
}

// New returns a Monitor with no targets.
func New(opts Options) *Monitor {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Monitor{opts: opts, log: opts.Log, targets: map[string]*running{}, services: map[string]*serviceState{}}
	m.passive = newPassive(opts.Now)
	if opts.Registerer != nil {
		m.metrics = newMetrics(opts.Registerer)
	}
	return m
}

// Passive returns the collector of passive signals for the gateway.
func (m *Monitor) Passive() *Passive { return m.passive }

// Update replaces the targets and the list of services (in the order the
// status page shows them). Targets whose check is unchanged keep running
// and keep their state; the others start afresh.
func (m *Monitor) Update(services []string, targets []Target) {
	m.mu.Lock()
	next := map[string]*running{}
	for _, t := range targets {
		k := t.key()
		if old, ok := m.targets[k]; ok && sameTarget(old.t, t) {
			next[k] = old
			delete(m.targets, k)
			continue
		}
		r := &running{t: t, status: CheckStatus{Service: t.Service, Check: t.Check, Scope: t.Scope, Since: m.opts.Now()}}
		next[k] = r
	}
	for _, old := range m.targets {
		if old.cancel != nil {
			old.cancel()
		}
		m.metrics.forget(old.t)
	}
	m.targets = next
	m.relay = nil
	m.byService = map[string][]*running{}
	for _, r := range next {
		m.byService[r.t.Service] = append(m.byService[r.t.Service], r)
		if r.t.Service == "" && r.t.Check == RelayCheck {
			m.relay = r
		}
		if m.ctx != nil && r.cancel == nil {
			m.start(r)
		}
	}
	keep := map[string]bool{}
	for _, s := range services {
		keep[s] = true
		if m.services[s] == nil {
			m.services[s] = &serviceState{since: m.opts.Now()}
		}
	}
	for s := range m.services {
		if !keep[s] {
			delete(m.services, s)
			m.metrics.forgetService(s)
		}
	}
	m.order = slices.Clone(services)
	m.passive.keep(keep)
	changed := m.recompute("")
	m.mu.Unlock()
	if changed && m.opts.OnChange != nil {
		m.opts.OnChange()
	}
}

// sameTarget reports whether two targets run the same check the same way.
func sameTarget(a, b Target) bool {
	if a.Spec == nil || b.Spec == nil {
		return false
	}
	a.Checker, b.Checker = nil, nil
	return reflect.DeepEqual(a, b)
}

// Run runs the targets until ctx is done.
func (m *Monitor) Run(ctx context.Context) error {
	m.mu.Lock()
	m.ctx = ctx
	for _, r := range m.targets {
		m.start(r)
	}
	m.mu.Unlock()
	// Passive signals change without any check running.
	tick := time.NewTicker(passiveBucket)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			m.mu.Lock()
			for _, r := range m.targets {
				if r.cancel != nil {
					r.cancel()
					r.cancel = nil
				}
			}
			m.ctx = nil
			m.mu.Unlock()
			m.wg.Wait()
			return nil
		case <-tick.C:
			m.mu.Lock()
			changed := m.recompute("")
			m.mu.Unlock()
			if changed && m.opts.OnChange != nil {
				m.opts.OnChange()
			}
		}
	}
}

// start runs r in its own goroutine; m.mu is held.
func (m *Monitor) start(r *running) {
	ctx, cancel := context.WithCancel(m.ctx)
	r.cancel = cancel
	m.wg.Go(func() { m.loop(ctx, r) })
}

// loop runs one target: first at a random point of its first interval, so
// that targets spread out, then every interval, 10% more or less. A Prompt
// target runs at once first, then at a random point of the next interval.
func (m *Monitor) loop(ctx context.Context, r *running) {
	spread := func() time.Duration { return time.Duration(rand.Int64N(int64(r.t.Interval))) }
	prompt := r.t.Prompt
	wait := spread()
	if prompt {
		wait = 0
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.runOnce(ctx, r)
		if prompt {
			prompt = false
			t.Reset(spread())
			continue
		}
		t.Reset(jitter(r.t.Interval))
	}
}

// jitter returns d, 10% more or less at random.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + time.Duration(rand.Int64N(int64(d/5)+1))
}

// runOnce runs r's check and records the result.
func (m *Monitor) runOnce(ctx context.Context, r *running) {
	res := m.probe(ctx, r.t)
	if ctx.Err() != nil {
		return // stopping or replaced: the result says nothing of the service
	}
	if r.t.Scope == Outside && r.t.Service != "" {
		// Before blaming the service, look at the relay path now: when it
		// is broken, every public service fails for that one cause. And a
		// passing outside check is news that the path may work again.
		m.refreshRelay(ctx, res.Time, res.State == Down)
	}
	m.record(r, res)
}

func (m *Monitor) probe(ctx context.Context, t Target) Result {
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	start := m.opts.Now()
	began := time.Now()
	err := t.Checker.Check(ctx)
	res := Result{Service: t.Service, Check: t.Check, Scope: t.Scope, State: Up, Latency: time.Since(began), Time: start}
	if err != nil {
		res.Error = err.Error()
		res.State = Down
		if _, ok := err.(*Warning); ok {
			res.State = Degraded
		}
	}
	return res
}

// refreshRelay runs the relay path's check unless it ran after since: on
// an outside failure, or on an outside pass while the relay path fails.
func (m *Monitor) refreshRelay(ctx context.Context, since time.Time, failed bool) {
	m.relayMu.Lock()
	defer m.relayMu.Unlock()
	m.mu.Lock()
	r := m.relay
	fresh := r != nil && r.status.Last != nil && !r.status.Last.Time.Before(since)
	failing := r != nil && r.status.Last != nil && r.status.Last.State == Down
	m.mu.Unlock()
	if r == nil || fresh || !failed && !failing {
		return
	}
	res := m.probe(ctx, r.t)
	if ctx.Err() == nil {
		m.record(r, res)
	}
}

// record applies the thresholds to a result and recomputes the states.
func (m *Monitor) record(r *running, res Result) {
	m.mu.Lock()
	if m.targets[r.t.key()] != r {
		m.mu.Unlock()
		return // replaced by a reload meanwhile
	}
	st := &r.status
	prev := st.State
	st.Last = &res
	if res.State == Down {
		st.Failures++
		st.Successes = 0
		st.LastFailure, st.LastError = res.Time, res.Error
		if st.Failures == 1 {
			st.FailingSince = res.Time
		}
		if st.State != Down && st.Failures >= r.t.Failures {
			st.State = Down
		}
	} else {
		st.Successes++
		st.Failures = 0
		st.FailingSince = time.Time{}
		if st.State != Down || st.Successes >= r.t.Successes {
			st.State = res.State
		}
	}
	if st.State != prev {
		st.Since = res.Time
		m.log.Info("check state", "service", res.Service, "check", res.Check, "scope", res.Scope, "state", st.State, "error", res.Error)
	}
	m.metrics.observe(res)
	changed := m.recompute(res.Service)
	svc := Unknown
	if s := m.services[res.Service]; s != nil {
		svc = s.state
	}
	m.mu.Unlock()
	if m.opts.OnResult != nil {
		m.opts.OnResult(res, svc)
	}
	if changed && m.opts.OnChange != nil {
		m.opts.OnChange()
	}
}

// recompute derives the state of service, or of every service when service
// is "" (the relay path's result concerns them all); m.mu is held. It
// reports whether a service's state, cause or reason, or the relay's
// state, changed.
func (m *Monitor) recompute(service string) bool {
	var relay *CheckStatus
	if m.relay != nil {
		relay = &m.relay.status
	}
	changed := false
	now := m.opts.Now()
	names := m.order
	if service != "" {
		names = []string{service}
	}
	for _, name := range names {
		s := m.services[name]
		if s == nil {
			continue
		}
		state, cause, reason := derive(m.byService[name], relay, m.passive.traffic(name))
		moved := state != s.state
		if moved || cause != s.cause || reason != s.reason {
			changed = true
			if moved {
				s.since = now
				m.log.Info("service state", "service", name, "state", state, "cause", cause, "reason", reason)
			}
			s.state, s.cause, s.reason = state, cause, reason
		}
		if moved || !s.exported {
			m.metrics.serviceState(name, s.state)
			s.exported = true
		}
	}
	relayState := Unknown
	if relay != nil {
		relayState = relay.State
	}
	if relayState != m.relayState {
		m.relayState = relayState
		changed = true
	}
	return changed
}

// derive is the state of a service from its targets, the relay path and
// its traffic.
func derive(targets []*running, relay *CheckStatus, tr Traffic) (State, string, string) {
	var inside, outside []*CheckStatus
	for _, r := range targets {
		if r.t.Scope == Outside {
			outside = append(outside, &r.status)
		} else {
			inside = append(inside, &r.status)
		}
	}
	slices.SortFunc(inside, byName)
	slices.SortFunc(outside, byName)
	insideKnown := false
	for _, c := range inside {
		switch c.State {
		case Down:
			return Down, CauseChecks, describe(c)
		case Unknown:
		default:
			insideKnown = true
		}
	}
	for _, c := range outside {
		if c.State != Down {
			continue
		}
		state := Degraded
		if !insideKnown {
			state = Down // nothing says the service itself works
		}
		// The relay path failed after this check last did: that is the
		// cause, until this check passes again. A check that fails again
		// once the relay path works is this service's exposure: else an
		// incident of the relay would outlive it, naming it, for good.
		last := c.LastFailure
		if last.IsZero() || last.Before(c.FailingSince) {
			last = c.FailingSince
		}
		if relay != nil && !relay.LastFailure.IsZero() && !relay.LastFailure.Before(last) {
			why := "relay path broken"
			if relay.Last != nil && relay.Last.State == Down {
				why += ": " + relay.Last.Error
			}
			return state, CauseRelay, why
		}
		if insideKnown {
			return state, CauseExposure, "exposure broken, inside checks pass: " + describe(c)
		}
		return state, CauseExposure, describe(c)
	}
	for _, c := range append(inside, outside...) {
		if c.State == Degraded {
			return Degraded, CauseChecks, describe(c)
		}
	}
	if tr.Failing() || tr.Slow() {
		return Degraded, CauseTraffic, tr.String()
	}
	for _, c := range append(inside, outside...) {
		if c.State != Unknown {
			return Up, "", ""
		}
	}
	if tr.Requests > 0 {
		return Up, "", "" // real requests are answered
	}
	return Unknown, "", ""
}

func byName(a, b *CheckStatus) int { return strings.Compare(a.Check, b.Check) }

func describe(c *CheckStatus) string {
	msg := "no answer yet"
	switch {
	case c.State == Down && c.LastError != "":
		msg = c.LastError // also while passes have not yet brought it back
	case c.Last != nil && c.Last.Error != "":
		msg = c.Last.Error
	}
	return fmt.Sprintf("%s check %s: %s", c.Scope, c.Check, msg)
}

// Snapshot returns a copy of the current states.
func (m *Monitor) Snapshot() Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	snap := Snapshot{Time: m.opts.Now()}
	byService := map[string][]CheckStatus{}
	for _, r := range m.targets {
		st := r.status
		if st.Last != nil {
			last := *st.Last
			st.Last = &last
		}
		byService[r.t.Service] = append(byService[r.t.Service], st)
	}
	for _, name := range m.order {
		s := m.services[name]
		checks := byService[name]
		slices.SortFunc(checks, func(a, b CheckStatus) int {
			return strings.Compare(a.Check+"/"+string(a.Scope), b.Check+"/"+string(b.Scope))
		})
		snap.Services = append(snap.Services, ServiceStatus{Name: name, State: s.state, Since: s.since, Cause: s.cause,
			Reason: s.reason, Checks: checks, Traffic: m.passive.traffic(name)})
	}
	if m.relay != nil {
		st := m.relay.status
		if st.Last != nil {
			last := *st.Last
			st.Last = &last
		}
		snap.Relay = &st
	}
	return snap
}
