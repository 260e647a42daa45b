package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/labgate/labgate/internal/config"
)

// EventKind says what happened to the reconciliation.
type EventKind string

const (
	// ReconcileFailed: a reconciliation failed after the previous one succeeded.
	ReconcileFailed EventKind = "reconcile_failed"
	// ReconcileRecovered: a reconciliation succeeded after failures (also
	// when the failures were those of a previous config), or a config that
	// manages no records replaced a failing one. The first success after Run
	// starts is reported too, so a listener that kept state across a restart
	// (an open alert) learns the outcome.
	ReconcileRecovered EventKind = "reconcile_recovered"
	// ConflictsChanged: the set of conflicts changed (it may now be empty);
	// the first successful reconciliation after Run starts reports its set.
	ConflictsChanged EventKind = "conflicts"
)

// Event is told to ReconcilerOptions.OnEvent.
type Event struct {
	Kind      EventKind
	Zone      string
	Err       error      // ReconcileFailed
	Conflicts []Conflict // ConflictsChanged
}

// ReconcilerOptions configure a Reconciler.
type ReconcilerOptions struct {
	Log        *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: metrics are not exported
	HTTPClient *http.Client          // for Cloudflare; nil: a client with a 30 s timeout
	// OnEvent, if set, is called (from Run's goroutine) when reconciliation
	// starts failing, recovers, or its conflicts change.
	OnEvent func(Event)
	// NewZone builds the zone of a config; nil is NewZone with HTTPClient.
	NewZone func(*config.Config) (*Zone, error)
	// MinRetry is the first wait after a failure, doubled on each further
	// failure up to the interval; 0 is 5 s.
	MinRetry time.Duration
}

// Reconciler keeps the zone of the current config in line with it: at start,
// after every Update, every dns.interval (±10%), and sooner after a failure.
type Reconciler struct {
	opts    ReconcilerOptions
	log     *slog.Logger
	metrics reconcilerMetrics
	updates chan *config.Config

	mu     sync.Mutex
	status Status
}

type reconcilerMetrics struct {
	success     prometheus.Gauge
	lastSuccess prometheus.Gauge
	changes     *prometheus.CounterVec
	conflicts   prometheus.Gauge
}

// NewReconciler returns a Reconciler; give it a config with Update and start
// it with Run.
func NewReconciler(opts ReconcilerOptions) *Reconciler {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if opts.NewZone == nil {
		client := opts.HTTPClient
		opts.NewZone = func(cfg *config.Config) (*Zone, error) {
			return NewZone(cfg, ProviderOptions{HTTPClient: client, Log: opts.Log})
		}
	}
	if opts.MinRetry <= 0 {
		opts.MinRetry = 5 * time.Second
	}
	m := reconcilerMetrics{
		success: prometheus.NewGauge(prometheus.GaugeOpts{Name: "labgate_dns_reconcile_success",
			Help: "0 if the last DNS reconciliation failed, else 1 (also before the first run and without dns.provider)."}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "labgate_dns_last_reconcile_success_timestamp_seconds",
			Help: "When the DNS records were last reconciled successfully (Unix time)."}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "labgate_dns_changes_total",
			Help: "DNS record sets changed, by action (create, update, delete)."}, []string{"action"}),
		conflicts: prometheus.NewGauge(prometheus.GaugeOpts{Name: "labgate_dns_conflicts",
			Help: "Desired DNS record sets that stand where records labgate does not own are."}),
	}
	for _, a := range []Action{Create, Update, Delete} {
		m.changes.WithLabelValues(string(a))
	}
	// Nothing has failed yet: a lab without dns.provider must not look like
	// one whose DNS is failing (the shipped alert rule fires on 0).
	m.success.Set(1)
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(m.success, m.lastSuccess, m.changes, m.conflicts)
	}
	return &Reconciler{opts: opts, log: opts.Log, metrics: m, updates: make(chan *config.Config, 1)}
}

// Update hands the reconciler a new config; it reconciles against it at once.
// It never blocks: a config not yet taken is replaced.
func (r *Reconciler) Update(cfg *config.Config) {
	for {
		select {
		case r.updates <- cfg:
			return
		default:
		}
		select {
		case <-r.updates: // drop the stale one
		default:
		}
	}
}

// Run reconciles until ctx is done.
func (r *Reconciler) Run(ctx context.Context) error {
	var (
		zone      *Zone
		interval  = 10 * time.Minute
		failures  int  // in a row, for the backoff; reset by a new config
		failing   bool // since the last success, whatever the config
		succeeded bool // a reconciliation succeeded since Run started
		conflicts []string
		timer     = time.NewTimer(time.Hour)
	)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case cfg := <-r.updates:
			z, err := r.opts.NewZone(cfg)
			if err != nil {
				r.log.Error("DNS records are not managed", "error", err)
				zone = nil
				r.setStatus(Status{})
				timer.Stop()
				continue
			}
			zone, failures = z, 0
			if cfg.DNS.Interval > 0 {
				interval = cfg.DNS.Interval
			}
			if zone == nil {
				timer.Stop()
				r.metrics.conflicts.Set(0)
				r.metrics.success.Set(1) // no provider: nothing fails
				r.setStatus(Status{})
				if failing {
					failing = false
					r.event(Event{Kind: ReconcileRecovered})
				}
				if len(conflicts) > 0 {
					conflicts = nil
					r.event(Event{Kind: ConflictsChanged})
				}
				continue
			}
			r.mu.Lock()
			if r.status.Zone != zone.Desired.Zone {
				r.status = newStatus(zone)
			} else {
				st := newStatus(zone)
				st.Time, st.Err = r.status.Time, r.status.Err
				for n := range st.desired {
					st.inPlace[n] = r.status.inPlace[n] && r.status.desired[n]
					if c, ok := r.status.conflicts[n]; ok {
						st.conflicts[n] = c
					}
				}
				r.status = st
			}
			r.mu.Unlock()
		case <-timer.C:
		}
		if zone == nil {
			continue
		}
		cs, planned, done, err := r.reconcile(ctx, zone)
		if ctx.Err() != nil {
			return nil
		}
		r.mu.Lock()
		r.status = r.status.after(cs, planned, done, err, time.Now())
		r.mu.Unlock()
		if err == nil {
			cur := make([]string, len(cs.Conflicts))
			for i, c := range cs.Conflicts {
				cur[i] = c.String()
			}
			if !succeeded || !slices.Equal(cur, conflicts) {
				conflicts = cur
				for _, c := range cs.Conflicts {
					r.log.Warn("DNS conflict: record left as it is", "record", c.Record.String(), "reason", c.Reason)
				}
				r.event(Event{Kind: ConflictsChanged, Zone: zone.Desired.Zone, Conflicts: cs.Conflicts})
			}
		}
		var wait time.Duration
		if err != nil {
			r.metrics.success.Set(0)
			if !failing {
				failing = true
				r.event(Event{Kind: ReconcileFailed, Zone: zone.Desired.Zone, Err: err})
			}
			failures++
			wait = min(r.opts.MinRetry<<min(failures-1, 16), interval)
			r.log.Error("DNS reconciliation failed, retrying", "zone", zone.Desired.Zone, "error", err, "retry_in", wait)
		} else {
			r.metrics.success.Set(1)
			r.metrics.lastSuccess.Set(float64(time.Now().UnixNano()) / 1e9)
			if failing || !succeeded {
				r.event(Event{Kind: ReconcileRecovered, Zone: zone.Desired.Zone})
				if failing {
					r.log.Info("DNS reconciliation recovered", "zone", zone.Desired.Zone)
				}
				failing = false
			}
			succeeded = true
			failures = 0
			wait = jitter(interval)
		}
		timer.Reset(wait)
	}
}

// jitter returns d give or take 10%, at random.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + time.Duration(rand.Int64N(int64(d/5)+1))
}

// Status returns what the last reconciliation found (safe for concurrent use).
func (r *Reconciler) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

func (r *Reconciler) setStatus(s Status) {
	r.mu.Lock()
	r.status = s
	r.mu.Unlock()
}

// reconcile lists, plans and applies once; planned is false when the
// listing failed, which applies nothing.
func (r *Reconciler) reconcile(ctx context.Context, z *Zone) (cs Changeset, planned bool, done []Change, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cs, err = z.Plan(ctx)
	if err != nil {
		return cs, false, nil, fmt.Errorf("listing the zone %s (%s): %w", z.Desired.Zone, z.Describe, err)
	}
	r.metrics.conflicts.Set(float64(len(cs.Conflicts)))
	done, err = z.Apply(ctx, cs)
	for _, c := range done {
		r.metrics.changes.WithLabelValues(string(c.Action)).Inc()
		r.log.Info("DNS record changed", "action", string(c.Action), "record", c.Record.String())
	}
	if errors.Is(err, ErrChanged) {
		err = fmt.Errorf("%w; planning again", err)
	}
	return cs, true, done, err
}

func (r *Reconciler) event(e Event) {
	if r.opts.OnEvent != nil {
		r.opts.OnEvent(e)
	}
}
