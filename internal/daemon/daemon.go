// Package daemon is the only place that wires labgate together for `serve`.
//
// A config becomes a generation: the gateway's routing state, one
// http.Server per listener address and the certificate source. Reloading
// builds a whole new generation next to the running one, attaches it to the
// same bound listeners (nothing is rebound), then drains the old generation
// for the grace period. If building fails, the old generation keeps serving
// and the errors are logged and exported as metrics.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"reflect"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/labgate/labgate/internal/certs"
	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/dns"
	"github.com/labgate/labgate/internal/gateway"
	"github.com/labgate/labgate/internal/gateway/l4"
	"github.com/labgate/labgate/internal/listen"
	"github.com/labgate/labgate/internal/speedtest"
)

// Options configure a Daemon.
type Options struct {
	// Load reads and parses the config; it is called at start and on every reload.
	Load func() (*config.Config, error)
	// Watch is the file to follow for changes ("" follows nothing; SIGHUP still reloads).
	Watch string
	// Stderr receives labgate's own logs.
	Stderr io.Writer
	// Version is reported in labgate_build_info.
	Version string
	// Ready, if set, is called with the daemon once the first generation serves.
	Ready func(*Daemon)
	// OnDNSEvent, if set, is told when DNS reconciliation starts failing,
	// recovers, or its conflicts change (tests, embedders); the daemon
	// alerts them itself as well (problems.go).
	OnDNSEvent func(dns.Event)

	// ChallengeDNS, if set, replaces the file's dns.provider as what writes
	// the DNS-01 records of tls.acme (tests); nil uses the provider.
	ChallengeDNS func(*config.Config) (certs.ChallengeDNS, error)
	// CertEvents, if set, receives every obtained, renewed or failed ACME
	// certificate (tests, embedders); the daemon alerts failures itself.
	CertEvents func(certs.Event)
	// RenewCheckInterval is how often ACME certificates are checked for
	// renewal (0: every 10 minutes).
	RenewCheckInterval time.Duration
	// OutsideDial, if set, connects the outside health checks (host:port of
	// the public path) instead of resolving the names with dns.resolvers.
	OutsideDial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Daemon runs `labgate serve`.
type Daemon struct {
	opts     Options
	log      *slog.Logger
	level    *slog.LevelVar
	access   *asyncWriter
	registry *listen.Registry
	prom     *prometheus.Registry
	metrics  *metrics
	gwm      *gateway.Metrics
	l4m      *l4.Metrics
	certm    *certs.Metrics
	speed    *relayPath // measures the relay path; outlives generations
	dns      *dnsRunner // DNS records and the embedded DNS server; outlive generations
	status   *statusPage
	checks   *checks // health monitor and alerts; outlive generations (health.go)

	problems *openProblems // of no one service, for the status page (openproblems.go)

	mu   sync.Mutex // serialises reloads
	cur  *generation
	gens int
	cas  map[string]*certs.CA // by directory, so a reload reuses the loaded CA

	drains sync.WaitGroup

	git *gitSource // set before the first generation when the config follows git
}

// New returns a Daemon that logs with a handler matching the first config.
func New(opts Options) *Daemon {
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	reg := prometheus.NewRegistry()
	d := &Daemon{
		opts:  opts,
		level: new(slog.LevelVar),
		prom:  reg,
		cas:   map[string]*certs.CA{},
	}
	d.log = slog.New(slog.NewTextHandler(opts.Stderr, &slog.HandlerOptions{Level: d.level}))
	d.metrics = newMetrics(reg, opts.Version)
	d.gwm = gateway.NewMetrics(reg)
	d.l4m = l4.NewMetrics(reg)
	d.certm = certs.NewMetrics(reg)
	d.speed = &relayPath{metrics: speedtest.NewMetrics(reg)}
	d.dns = newDNSRunner(reg, d.dnsEvent)
	d.status = newStatusPage(d.speed)
	d.problems = newOpenProblems(reg, time.Now)
	d.status.problems = d.problems.list
	d.status.health, d.status.dnsStatus, d.status.gitRevision = d.Health, d.dns.status, d.gitRevision
	d.status.damaged, d.speed.damaged = d.stateDamaged, d.stateDamaged
	return d
}

// Run serves until ctx is done, reloading on SIGHUP and file changes (or,
// with a git section, on pushes: see gitops.go).
func (d *Daemon) Run(ctx context.Context) error {
	cfg, err := d.opts.Load()
	if err != nil {
		return err
	}
	d.setupLogging(cfg)
	d.registry = listen.NewRegistry(d.log)
	defer d.registry.Close()
	d.startChecks(ctx)
	defer d.stopChecks()
	stopGit := func() {}
	if cfg.Git != nil {
		if stopGit, err = d.startGit(ctx, cfg); err != nil {
			d.stop()
			return err
		}
		cfg = d.config()
	} else if err := d.apply(cfg); err != nil {
		return err
	}
	// Follow the file and SIGHUP before saying we are ready, so no change is missed.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	changed := (&watcher{path: d.opts.Watch, log: d.log}).watch(ctx)
	attrs := []any{"config", cfg.Path, "generation", d.gens, "services", len(cfg.Services)}
	if u := adminURL(cfg.Gateway.Admin); u != "" {
		attrs = append(attrs, "status_page", u)
	}
	d.log.Info("labgate serving", attrs...)
	if d.opts.Ready != nil {
		d.opts.Ready(d)
	}

	for {
		select {
		case <-ctx.Done():
			stopGit() // no revision is applied while stopping
			d.stop()
			return nil
		case <-hup:
			if d.git != nil {
				d.log.Info("fetching from git", "reason", "SIGHUP")
				d.git.syncer.Trigger()
				d.mu.Lock()
				cur := d.cur
				d.mu.Unlock()
				if cur != nil {
					_, _ = d.retryState(cur.cfg)
				}
				continue
			}
			d.log.Info("reloading", "reason", "SIGHUP")
			d.Reload()
		case <-changed:
			if d.git != nil {
				d.log.Warn("the local file changed; restart labgate to apply a change of its git section", "file", d.opts.Watch)
				continue
			}
			d.log.Info("reloading", "reason", "file changed")
			d.Reload()
		}
	}
}

// Reload loads the config and swaps it in if it is valid and different.
// It reports whether the running generation changed.
func (d *Daemon) Reload() bool {
	cfg, err := d.opts.Load()
	if err != nil {
		d.reloadFailed(err)
		return false
	}
	changed, _ := d.swap(cfg)
	return changed
}

// swap applies cfg unless it is the running config. When building it fails,
// the running generation keeps serving and the error is returned.
func (d *Daemon) swap(cfg *config.Config) (bool, error) {
	d.mu.Lock()
	same := d.cur != nil && reflect.DeepEqual(d.cur.cfg, cfg)
	var running *config.Config
	if same {
		running = d.cur.cfg
	}
	d.mu.Unlock()
	if same {
		if rebuilt, err := d.retryState(running); rebuilt {
			return err == nil, err
		}
		d.log.Info("config unchanged, nothing to reload")
		d.metrics.reloads.WithLabelValues("unchanged").Inc()
		return false, nil
	}
	return d.applyReload(cfg)
}

// retryState does what a reload of the running config cfg (the pointer
// that serves) is for in state_dir (docs/deploy.md): it ends the alerts of
// damaged copies the user deleted and, while the internal CA could not be
// used, builds cfg again to try the CA restored since (not over a config
// that replaced it meanwhile). It reports whether it built.
func (d *Daemon) retryState(cfg *config.Config) (bool, error) {
	d.clearStateAlerts(cfg.StateDir)
	if !d.openCauses()[causeCA] {
		return false, nil
	}
	d.log.Info("config unchanged; trying the internal CA again")
	err := d.applyIf(cfg, cfg)
	if errors.Is(err, errSuperseded) {
		return false, nil // a git revision applied meanwhile: it tried the CA
	}
	if err != nil {
		d.reloadFailed(err)
		return true, err
	}
	d.log.Info("reloaded", "generation", d.gens, "services", len(cfg.Services))
	return true, nil
}

// errSuperseded is applyIf's error when another config serves.
var errSuperseded = errors.New("another config serves")

// applyReload builds cfg and swaps it in, or logs why not.
func (d *Daemon) applyReload(cfg *config.Config) (bool, error) {
	if err := d.apply(cfg); err != nil {
		d.reloadFailed(err)
		return false, err
	}
	d.log.Info("reloaded", "generation", d.gens, "services", len(cfg.Services))
	return true, nil
}

func (d *Daemon) reloadFailed(err error) {
	d.metrics.reloadFailed(d.log, err, "serving the previous one")
}

// apply builds a generation from cfg and swaps it in.
func (d *Daemon) apply(cfg *config.Config) error { return d.applyIf(cfg, nil) }

// applyIf is apply, only while the running config is expect (nil: any);
// else it returns errSuperseded.
func (d *Daemon) applyIf(cfg, expect *config.Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if expect != nil && (d.cur == nil || d.cur.cfg != expect) {
		return errSuperseded
	}
	d.openAlerts(cfg)
	g, err := d.build(cfg)
	if err != nil {
		// Close what this attempt bound and the running generation does not use.
		var keep []string
		if d.cur != nil {
			keep = d.cur.addrs()
		}
		d.registry.Retain(keep)
		d.retireSeries(nil, d.cur) // what the failed build exported
		return err
	}
	d.level.Set(parseLevel(cfg.Log.Level))
	old := d.cur
	g.attach()
	d.cur = g
	d.gens++
	d.registry.Retain(g.addrs())
	d.retireSeries(old, g)
	d.metrics.reloadOK.Set(1)
	d.metrics.reloadTime.SetToCurrentTime()
	d.metrics.generation.Set(float64(d.gens))
	d.speed.update(cfg, d.log)
	d.dns.update(cfg, d.log)
	d.status.update(cfg, g, d.gens, d.log)
	d.updateChecks(cfg)
	d.clearStaleCertAlerts(cfg)
	d.clearStateAlerts(cfg.StateDir)
	if d.gens == 1 {
		d.seedStateProblems(cfg.StateDir) // openproblems.go
	}
	if d.gens > 1 {
		d.metrics.reloads.WithLabelValues("success").Inc()
	}
	if old != nil {
		d.drains.Add(1)
		go func() {
			defer d.drains.Done()
			old.drain(cfg.Gateway.Limits.ShutdownGrace, false)
			releaseACME(old, g)
		}()
	}
	return nil
}

// stop drains the current generation and waits for older ones.
func (d *Daemon) stop() {
	d.mu.Lock()
	g := d.cur
	d.cur = nil
	d.mu.Unlock()
	d.registry.Close() // stop accepting before draining
	d.speed.stop()
	d.dns.stop()
	d.status.stop()
	if g != nil {
		g.drain(g.cfg.Gateway.Limits.ShutdownGrace, true)
		releaseACME(g, nil)
	}
	d.drains.Wait()
	if d.access != nil {
		d.access.Close()
	}
	d.log.Info("labgate stopped")
}

// Addr returns the bound address of a listener from the config (useful with port 0).
func (d *Daemon) Addr(configured string) net.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur == nil {
		return nil
	}
	for _, s := range d.cur.servers {
		if s.addr == configured {
			return s.ln.Addr()
		}
	}
	return nil
}

// adminHandler returns the daemon's admin handler (/metrics, /healthz,
// /api/relay-path, and the status page, its API, badges and images).
func (d *Daemon) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", d.metrics.handler(d.prom))
	mux.HandleFunc("GET /api/relay-path", d.speed.serveHTTP)
	d.git.routes(mux)
	mux.Handle("/", d.status.adminHandler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		g, n := d.cur, d.gens
		d.mu.Unlock()
		if g == nil {
			http.Error(w, "stopping", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "ok generation=%d services=%d\n", n, len(g.cfg.Services))
	})
	return mux
}

func (d *Daemon) setupLogging(cfg *config.Config) {
	opts := &slog.HandlerOptions{Level: d.level}
	d.level.Set(parseLevel(cfg.Log.Level))
	if cfg.Log.Format == "json" {
		d.log = slog.New(slog.NewJSONHandler(d.opts.Stderr, opts))
	} else {
		d.log = slog.New(slog.NewTextHandler(d.opts.Stderr, opts))
	}
	d.access = newAsyncWriter(d.opts.Stderr, 100*time.Millisecond)
}

// accessLogger returns the access logger for cfg, or nil when it is off.
func (d *Daemon) accessLogger(cfg *config.Config) *slog.Logger {
	if !cfg.Log.Access {
		return nil
	}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(d.access, nil))
	}
	return slog.New(slog.NewTextHandler(d.access, nil))
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(s)) // validated by config
	return l
}

// config returns the running config (nil when stopped).
func (d *Daemon) config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur == nil {
		return nil
	}
	return d.cur.cfg
}

// generation returns how many generations have been applied.
func (d *Daemon) generation() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.gens
}

// adminURL is the address of the admin listener (status page, /metrics) as
// a browser on the same machine opens it; "" when there is none.
func adminURL(admin string) string {
	host, port, err := net.SplitHostPort(admin)
	if err != nil {
		return ""
	}
	if ip, err := netip.ParseAddr(host); host == "" || err == nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}
