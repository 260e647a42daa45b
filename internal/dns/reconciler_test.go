package dns

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/labgate/labgate/internal/config"
)

// memProvider is a zone in memory, for the reconciler's timing and error
// handling (the real providers are tested against BIND and the Cloudflare API).
type memProvider struct {
	mu        sync.Mutex
	records   map[Key]Record
	listFails int // the next listings that fail
	lists     int
	applied   []string
}

func (m *memProvider) Records(ctx context.Context) ([]Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lists++
	if m.listFails > 0 {
		m.listFails--
		return nil, errors.New("connection refused")
	}
	var out []Record
	for _, r := range m.records {
		out = append(out, r)
	}
	return out, nil
}

func (m *memProvider) Apply(ctx context.Context, c Change) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.applied = append(m.applied, c.String())
	switch c.Action {
	case Delete:
		delete(m.records, c.Record.Key())
		delete(m.records, c.Owner.Key())
	default:
		m.records[c.Record.Key()] = c.Record
		m.records[c.Owner.Key()] = c.Owner
	}
	return nil
}

func (m *memProvider) SetTXT(ctx context.Context, fqdn, value string) error    { return nil }
func (m *memProvider) DeleteTXT(ctx context.Context, fqdn, value string) error { return nil }

func (m *memProvider) state() (lists int, applied []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lists, append([]string(nil), m.applied...)
}

func TestReconcilerRetriesAndRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := &memProvider{records: map[Key]Record{
			// Ours but no longer desired: deleted only once the listing works.
			{"old.example.org", "A"}:     a("old.example.org", "192.0.2.9"),
			{"a-old.example.org", "TXT"}: txt("a-old.example.org", mine),
			{"blog.example.org", "A"}:    a("blog.example.org", "192.0.2.1"),
		}, listFails: 3}
		var events []string
		reg := prometheus.NewRegistry()
		desired := []Record{a("relay.example.org", "203.0.113.7"), a("blog.example.org", "203.0.113.7")}
		r := NewReconciler(ReconcilerOptions{
			Registerer: reg,
			OnEvent: func(e Event) {
				s := string(e.Kind)
				if e.Err != nil {
					s += ": " + e.Err.Error()
				}
				for _, c := range e.Conflicts {
					s += " " + c.Record.Name
				}
				events = append(events, s)
			},
			NewZone: func(cfg *config.Config) (*Zone, error) {
				return &Zone{Provider: mem, Describe: "memory", Owner: "homelab", Desired: Desired{Zone: "example.org", Records: desired}}, nil
			},
		})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- r.Run(ctx) }()
		r.Update(&config.Config{DNS: config.DNS{Interval: 10 * time.Minute}})
		synctest.Wait()

		// The first listing failed: nothing applied, a failure event, success 0.
		if lists, applied := mem.state(); lists != 1 || len(applied) != 0 {
			t.Fatalf("after a failed listing: %d listings, applied %v", lists, applied)
		}
		if got := testutil.ToFloat64(r.metrics.success); got != 0 {
			t.Errorf("labgate_dns_reconcile_success = %v, want 0", got)
		}
		// Retries after 5 s, 10 s, 20 s: the fourth listing works.
		time.Sleep(5*time.Second + 10*time.Second + 19*time.Second)
		synctest.Wait()
		if lists, applied := mem.state(); lists != 3 || len(applied) != 0 {
			t.Fatalf("before the third retry: %d listings, applied %v", lists, applied)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		lists, applied := mem.state()
		if lists != 4 {
			t.Fatalf("listings = %d, want 4", lists)
		}
		if diff := cmp.Diff([]string{"delete old.example.org A 192.0.2.9", "create relay.example.org A 203.0.113.7"}, applied); diff != "" {
			t.Errorf("applied (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{
			"reconcile_failed: listing the zone example.org (memory): connection refused",
			"conflicts blog.example.org",
			"reconcile_recovered",
		}, events); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		if got := testutil.ToFloat64(r.metrics.success); got != 1 {
			t.Errorf("labgate_dns_reconcile_success = %v, want 1", got)
		}
		if got := testutil.ToFloat64(r.metrics.conflicts); got != 1 {
			t.Errorf("labgate_dns_conflicts = %v, want 1", got)
		}
		if got := testutil.ToFloat64(r.metrics.changes.WithLabelValues("create")); got != 1 {
			t.Errorf(`labgate_dns_changes_total{action="create"} = %v, want 1`, got)
		}
		if got := testutil.ToFloat64(r.metrics.lastSuccess); got != float64(time.Now().Unix()) {
			t.Errorf("last success timestamp = %v, want now (%d)", got, time.Now().Unix())
		}

		// Then every 10 minutes, give or take 10%.
		time.Sleep(9 * time.Minute)
		synctest.Wait()
		if l, _ := mem.state(); l != 4 {
			t.Fatalf("reconciled again before 9 minutes: %d listings", l)
		}
		time.Sleep(2*time.Minute + time.Second)
		synctest.Wait()
		if l, _ := mem.state(); l != 5 {
			t.Fatalf("listings after 11 minutes = %d, want 5", l)
		}

		// A config change reconciles at once.
		desired = desired[:1]
		r.Update(&config.Config{DNS: config.DNS{Interval: 10 * time.Minute}})
		synctest.Wait()
		if l, _ := mem.state(); l != 6 {
			t.Fatalf("listings after Update = %d, want 6", l)
		}
		if !strings.HasSuffix(events[len(events)-1], "conflicts") {
			t.Errorf("the cleared conflicts were not told: %v", events)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

func TestJitter(t *testing.T) {
	lo, hi := time.Duration(1<<62), time.Duration(0)
	for range 1000 {
		d := jitter(10 * time.Minute)
		if d < 9*time.Minute || d > 11*time.Minute {
			t.Fatalf("jitter(10m) = %s", d)
		}
		lo, hi = min(lo, d), max(hi, d)
	}
	// Uniform over ±1m, 1000 draws spread over less than 90s with a
	// probability below 1e-100: labs reconciling at once must drift apart.
	if hi-lo < 90*time.Second {
		t.Errorf("jitter(10m) stays within [%s, %s]", lo, hi)
	}
}

// The status of each host follows the reconciliations, and a failure
// that a new config fixes is told as recovered (the alert it raised must
// resolve), as is one whose config stops managing records.
func TestReconcilerStatusAcrossUpdates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := &memProvider{records: map[Key]Record{
			{"blog.example.org", "A"}: a("blog.example.org", "192.0.2.1"),
		}, listFails: 1}
		var events []string
		desired := []Record{a("relay.example.org", "203.0.113.7"), a("blog.example.org", "203.0.113.7")}
		managed := true
		r := NewReconciler(ReconcilerOptions{
			OnEvent: func(e Event) { events = append(events, string(e.Kind)) },
			NewZone: func(cfg *config.Config) (*Zone, error) {
				if !managed {
					return nil, nil
				}
				return &Zone{Provider: mem, Describe: "memory", Owner: "homelab", Desired: Desired{Zone: "example.org", Records: desired}}, nil
			},
		})
		if st, _ := r.Status().Host("relay.example.org"); st != "" {
			t.Errorf("before any config: %q", st)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- r.Run(ctx) }()
		r.Update(&config.Config{DNS: config.DNS{Interval: 10 * time.Minute}})
		synctest.Wait()
		st := r.Status()
		if s, d := st.Host("relay.example.org"); s != HostFailing || !strings.Contains(d, "connection refused") {
			t.Errorf("relay after a failed listing: %q %q", s, d)
		}
		if s, _ := st.Host("other.example.org"); s != "" {
			t.Errorf("a name labgate does not manage: %q", s)
		}
		// A new config before the retry: its first reconciliation works.
		r.Update(&config.Config{DNS: config.DNS{Interval: 10 * time.Minute}})
		synctest.Wait()
		st = r.Status()
		if s, d := st.Host("Relay.Example.org."); s != HostOK || d != "" {
			t.Errorf("relay after a good reconciliation: %q %q", s, d)
		}
		if s, d := st.Host("blog.example.org"); s != HostConflict || d == "" {
			t.Errorf("blog, not labgate's: %q %q", s, d)
		}
		// The config stops managing records.
		managed = false
		r.Update(&config.Config{})
		synctest.Wait()
		if s, _ := r.Status().Host("relay.example.org"); s != "" {
			t.Errorf("relay once unmanaged: %q", s)
		}
		if diff := cmp.Diff([]string{"reconcile_failed", "conflicts", "reconcile_recovered", "conflicts"}, events); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		cancel()
		<-done
	})
}

// gateProvider holds every listing until it is let through, and counts
// how many run at once.
type gateProvider struct {
	memProvider
	gate           chan struct{}
	inFlight, most int
}

func (g *gateProvider) Records(ctx context.Context) ([]Record, error) {
	g.mu.Lock()
	g.inFlight++
	g.most = max(g.most, g.inFlight)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.inFlight--
		g.mu.Unlock()
	}()
	select {
	case <-g.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.memProvider.Records(ctx)
}

// TestReconcilerCoalescesReloads: configs arriving while a reconciliation
// runs do not start others beside it; once it ends, only the newest
// config is reconciled, and a stop ends the run in progress.
func TestReconcilerCoalescesReloads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := &gateProvider{memProvider: memProvider{records: map[Key]Record{}}, gate: make(chan struct{})}
		var built []uint32
		r := NewReconciler(ReconcilerOptions{
			NewZone: func(cfg *config.Config) (*Zone, error) {
				built = append(built, cfg.DNS.TTL)
				return &Zone{Provider: g, Owner: "homelab", Desired: Desired{Zone: "example.org",
					Records: []Record{{Name: "relay.example.org", Type: "A", TTL: cfg.DNS.TTL, Values: []string{"203.0.113.7"}}}}}, nil
			},
		})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- r.Run(ctx) }()
		r.Update(&config.Config{DNS: config.DNS{Interval: time.Hour, TTL: 1}})
		synctest.Wait() // the first reconciliation waits in its listing
		for ttl := uint32(2); ttl <= 6; ttl++ {
			r.Update(&config.Config{DNS: config.DNS{Interval: time.Hour, TTL: ttl}})
		}
		synctest.Wait()
		g.gate <- struct{}{} // the first listing ends; the newest config follows
		synctest.Wait()
		if !slices.Equal(built, []uint32{1, 6}) {
			t.Errorf("zones built for the configs with TTL %v, want 1 then 6 only", built)
		}
		g.gate <- struct{}{}
		synctest.Wait()
		if _, applied := g.state(); len(applied) != 2 || !strings.HasPrefix(applied[1], "update relay.example.org A") {
			t.Errorf("applied %v, want a create (TTL 1) then an update (TTL 6)", applied)
		}
		// A reconciliation in progress when the reconciler stops.
		r.Update(&config.Config{DNS: config.DNS{Interval: time.Hour, TTL: 7}})
		synctest.Wait()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if g.most != 1 {
			t.Errorf("%d listings ran at once, want 1", g.most)
		}
	})
}

// A lab without dns.provider never has a failed reconciliation: the success
// gauge reads 1 before the first run, and again once a failing provider is
// removed from the file (the shipped alert rule fires on 0).
func TestReconcilerSuccessWithoutProvider(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := &memProvider{records: map[Key]Record{}, listFails: 1000}
		withProvider := true
		r := NewReconciler(ReconcilerOptions{
			Registerer: prometheus.NewRegistry(),
			NewZone: func(cfg *config.Config) (*Zone, error) {
				if !withProvider {
					return nil, nil
				}
				return &Zone{Provider: mem, Describe: "memory", Owner: "homelab", Desired: Desired{Zone: "example.org"}}, nil
			},
		})
		if got := testutil.ToFloat64(r.metrics.success); got != 1 {
			t.Errorf("before any run: labgate_dns_reconcile_success = %v, want 1", got)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- r.Run(ctx) }()
		r.Update(&config.Config{DNS: config.DNS{Interval: 10 * time.Minute}})
		synctest.Wait()
		if got := testutil.ToFloat64(r.metrics.success); got != 0 {
			t.Errorf("after a failed run: labgate_dns_reconcile_success = %v, want 0", got)
		}
		withProvider = false
		r.Update(&config.Config{})
		synctest.Wait()
		if got := testutil.ToFloat64(r.metrics.success); got != 1 {
			t.Errorf("after dns.provider was removed: labgate_dns_reconcile_success = %v, want 1", got)
		}
		cancel()
		<-done
	})
}

// The first successful reconciliation after Run starts reports itself, even
// though nothing failed before: alerts kept across a restart learn that DNS
// is fine and its conflicts are gone.
func TestReconcilerReportsFirstOutcome(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := &memProvider{records: map[Key]Record{}}
		var events []string
		r := NewReconciler(ReconcilerOptions{
			Registerer: prometheus.NewRegistry(),
			OnEvent: func(e Event) {
				events = append(events, fmt.Sprintf("%s %d", e.Kind, len(e.Conflicts)))
			},
			NewZone: func(cfg *config.Config) (*Zone, error) {
				return &Zone{Provider: mem, Describe: "memory", Owner: "homelab", Desired: Desired{Zone: "example.org"}}, nil
			},
		})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- r.Run(ctx) }()
		r.Update(&config.Config{DNS: config.DNS{Interval: 10 * time.Minute}})
		synctest.Wait()
		time.Sleep(11 * time.Minute) // a second, unchanged run reports nothing
		synctest.Wait()
		cancel()
		<-done
		if diff := cmp.Diff([]string{"conflicts 0", "reconcile_recovered 0"}, events); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
	})
}
