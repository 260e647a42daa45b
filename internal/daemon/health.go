package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"sync"
	"time"

	"github.com/labgate/labgate/internal/alert"
	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/health"
)

// checks runs the health monitor and the alert manager for serve. They
// outlive generations: a reload replaces the targets and the routing of
// alerts, and keeps check states, incidents and the delivery queue. The
// alert state (state_dir/alerts) is opened with the first config that has
// receivers.
type checks struct {
	mon *health.Monitor
	lb  *balancing // the monitor's http checks feed the gateway's rotation (balance.go)
	ctx context.Context

	mu     sync.Mutex
	alerts *alert.Manager // nil until a config has receivers
	dir    string         // the alert database's directory, fixed once opened
	off    bool           // the config has receivers, but the alert state could not be opened

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startChecks starts the monitor; it stops with ctx or stopChecks.
func (d *Daemon) startChecks(ctx context.Context) {
	c := &checks{lb: newBalancing()}
	c.mon = health.New(health.Options{
		Log:        d.log.With("component", "health"),
		Registerer: d.prom,
		OnChange: func() {
			if a := c.manager(); a != nil {
				a.Observe(c.mon.Snapshot())
			}
		},
		OnResult: d.status.record,
	})
	c.ctx, c.cancel = context.WithCancel(ctx)
	c.wg.Go(func() { _ = c.mon.Run(c.ctx) })
	c.wg.Go(func() { d.watchStateAlerts(c.ctx) }) // with or without receivers: the status page shows them
	d.checks = c
}

// alertsOff reports whether the config's receivers get nothing because
// the alert state could not be opened.
func (c *checks) alertsOff() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.off
}

func (c *checks) manager() *alert.Manager {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.alerts
}

// openAlerts opens the alert manager with the first config that has
// receivers. apply calls it before building the generation, so that a
// certificate or DNS failure of that very generation has somewhere to go
// (the manager keeps raised problems until it is given the config).
func (d *Daemon) openAlerts(cfg *config.Config) {
	c := d.checks
	if c == nil {
		return
	}
	mgr := c.manager()
	dir := filepath.Join(cfg.StateDir, "alerts")
	switch {
	case mgr == nil && len(cfg.Alerts) > 0:
		mgr, err := alert.Open(alert.Options{Dir: dir, Log: d.log.With("component", "alert"), Registerer: d.prom})
		if err != nil {
			d.log.Error("alerts are off: their state cannot be kept", "error", err)
			c.mu.Lock()
			c.off = true
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		c.alerts, c.dir, c.off = mgr, dir, false
		c.mu.Unlock()
		c.wg.Go(func() { _ = mgr.Run(c.ctx) })
		if aside := mgr.Damaged(); aside != "" {
			d.stateDamaged(cfg.StateDir, aside, "The alert state was damaged: its open incidents, their reminders and the notices not yet delivered are lost.")
		}
		// DNS alerts of a previous run: settled by the reconciler's first
		// outcome, which reports itself; when alerts open after it (added
		// to the file later), by what it found.
		d.settleDNSAlerts(d.dns.status(), dnsHosts(cfg))
	case mgr != nil && dir != c.dir:
		d.log.Warn("state_dir changed: the alert state stays where it is until a restart", "alerts", c.dir)
	case mgr == nil: // no receivers (any more)
		c.mu.Lock()
		c.off = false
		c.mu.Unlock()
	}
}

// updateChecks points the monitor and the alert manager at cfg, and the
// monitor's per-backend results at the generation that serves it (d.mu is
// held: apply).
func (d *Daemon) updateChecks(cfg *config.Config) {
	c := d.checks
	if c == nil {
		return
	}
	mgr := c.manager()
	if d.cur != nil {
		c.lb.use(d.cur.gw, cfg)
	}
	targets, err := health.Targets(cfg, health.Env{OutsideTLS: d.outsideTLS(cfg), OutsideDial: d.opts.OutsideDial, OnBackend: c.lb.observe})
	if err != nil {
		d.log.Error("some health checks cannot run", "error", err)
	}
	c.mon.Passive().SetMaxLatency(health.MaxLatency(cfg))
	c.mon.Update(health.ServiceNames(cfg), targets)
	if mgr != nil {
		mgr.Update(cfg)
		mgr.Observe(c.mon.Snapshot())
	}
}

// outsideTLS trusts the system's roots and, when labgate issues its own
// certificates, its internal CA: outside checks reach labgate's listeners.
func (d *Daemon) outsideTLS(cfg *config.Config) *tls.Config {
	if cfg.TLS.ACME != nil {
		return nil
	}
	ca, ok := d.cas[filepath.Join(cfg.StateDir, "ca")]
	if !ok {
		return nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	pool.AddCert(ca.Root())
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// stopChecks stops the monitor and the notifier and closes the alert state.
func (d *Daemon) stopChecks() {
	c := d.checks
	if c == nil {
		return
	}
	c.cancel()
	c.wg.Wait()
	if a := c.manager(); a != nil {
		if err := a.Close(); err != nil {
			d.log.Error("closing alert state", "error", err)
		}
	}
}

// observe is gateway.Options.Observe: the passive health signals of each
// service's proxied requests.
func (d *Daemon) observe() func(string) func(int, time.Duration) {
	if d.checks == nil {
		return nil
	}
	return d.checks.mon.Passive().For
}

// RaiseAlert opens an incident for a problem that is no one service's, for
// alerting.notify: cause names it ("cert/vault.example.org" when a renewal
// failed, "dns" when a reconcile did), title and detail say what is wrong.
// Raising it again changes nothing; it lasts, across restarts, until
// ClearAlert(cause). Without receivers it is only logged. Either way the
// admin status page shows it while it lasts (openproblems.go).
func (d *Daemon) RaiseAlert(cause, title, detail string) {
	d.raiseAlertSince(time.Time{}, cause, title, detail)
}

// raiseAlertSince is RaiseAlert of a problem that began at since (zero:
// now), as the status page tells it (openproblems.go).
func (d *Daemon) raiseAlertSince(since time.Time, cause, title, detail string) {
	d.problems.raiseSince(cause, title, detail, since)
	a := d.Alerts()
	if a == nil {
		why := "problem (no alert receivers configured)"
		if d.checks != nil && d.checks.alertsOff() {
			why = "problem (alerts are off: their state cannot be kept)"
		}
		d.log.Warn(why, "cause", cause, "title", title, "detail", detail)
		return
	}
	if err := a.Raise(cause, title, detail); err != nil {
		d.log.Error("alert state not saved", "cause", cause, "error", err)
	}
}

// ClearAlert resolves what RaiseAlert(cause) opened, if anything.
func (d *Daemon) ClearAlert(cause string) {
	d.problems.clear(cause)
	if a := d.Alerts(); a != nil {
		if err := a.Clear(cause); err != nil {
			d.log.Error("alert state not saved", "cause", cause, "error", err)
		}
	}
}

// Health returns the current health of every service (for the status page).
// Call it once the daemon is ready (Options.Ready).
func (d *Daemon) Health() health.Snapshot {
	if d.checks == nil {
		return health.Snapshot{Time: time.Now()}
	}
	return d.checks.mon.Snapshot()
}

// Alerts returns the alert manager, for problems that are no one
// service's: Raise("cert/<name>", …) when a renewal fails, Clear when it
// succeeds; the same for "dns". nil while no config has receivers.
func (d *Daemon) Alerts() *alert.Manager {
	if d.checks == nil {
		return nil
	}
	return d.checks.manager()
}
