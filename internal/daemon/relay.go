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
	"sort"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/relay"
)

// RelayOptions configure `labgate relay`.
type RelayOptions struct {
	// Load returns the relay's options: from the file's relay section (see
	// RelayFromConfig) or from flags. Called at start and on every reload.
	Load func() (relay.Options, string, error) // options, admin address
	// Watch is the file to follow ("" follows nothing; SIGHUP still reloads).
	Watch   string
	Stderr  io.Writer
	Version string
	Ready   func(*Relay)
	// Speedtest, if set, says where to serve the relay path measurement
	// (see RelaySpeedtestFromConfig; nil serves none). Called at start and
	// on every reload.
	Speedtest func() (*SpeedtestEndpoint, error)
}

// Relay runs `labgate relay`: the relay engine, its admin listener, reloads.
type Relay struct {
	opts    RelayOptions
	log     *slog.Logger
	prom    *prometheus.Registry
	metrics *metrics
	rm      *relay.Metrics
	r       *relay.Relay
	admin   net.Listener
	speed   atomic.Pointer[speedServer] // nil without relay.speedtest
}

// NewRelay returns a relay daemon.
func NewRelay(opts RelayOptions) *Relay {
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	reg := prometheus.NewRegistry()
	return &Relay{
		opts:    opts,
		log:     slog.New(slog.NewTextHandler(opts.Stderr, nil)),
		prom:    reg,
		metrics: newMetrics(reg, opts.Version),
		rm:      relay.NewMetrics(reg),
	}
}

// Run relays until ctx is done, reloading on SIGHUP and file changes.
func (d *Relay) Run(ctx context.Context) error {
	ro, admin, err := d.load()
	if err != nil {
		return err
	}
	r, err := relay.New(ro)
	if err != nil {
		return err
	}
	d.r = r
	if admin != "" {
		ln, err := net.Listen("tcp", admin)
		if err != nil {
			return fmt.Errorf("listening on %s (relay.admin): %w", admin, err)
		}
		d.admin = ln
		srv := &http.Server{Handler: d.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
	}
	ep, err := d.speedtest()
	if err != nil {
		return err
	}
	speed, err := updateSpeedServer(nil, ep, d.log)
	if err != nil {
		return err
	}
	d.speed.Store(speed)
	defer func() { d.speed.Load().close() }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	w := &watcher{path: d.opts.Watch, log: d.log}
	changed := w.watch(ctx)
	d.metrics.reloadOK.Set(1)
	d.metrics.reloadTime.SetToCurrentTime()
	d.metrics.generation.Set(1)
	d.log.Info("labgate relay forwarding", "routes", len(ro.Routes))
	if d.opts.Ready != nil {
		d.opts.Ready(d)
	}
	current := ro
	for {
		select {
		case err := <-done:
			return err
		case <-hup:
			current = d.reload(current, "SIGHUP")
		case <-changed:
			current = d.reload(current, "file changed")
		}
	}
}

func (d *Relay) reload(current relay.Options, reason string) relay.Options {
	d.log.Info("reloading", "reason", reason)
	if ep, err := d.speedtest(); err == nil { // a broken file is reported below
		s, err := updateSpeedServer(d.speed.Load(), ep, d.log)
		if err != nil {
			d.log.Error("relay path endpoint not moved, still serving the previous one", "error", err)
		}
		d.speed.Store(s)
	}
	ro, _, err := d.load()
	if err == nil && reflect.DeepEqual(ro.Routes, current.Routes) && sameLimits(ro, current) {
		d.metrics.reloads.WithLabelValues("unchanged").Inc()
		return current
	}
	if err == nil {
		err = d.r.Update(ro)
	}
	if err != nil {
		d.metrics.reloadOK.Set(0)
		d.metrics.reloads.WithLabelValues("failure").Inc()
		var errs config.Errors
		if errors.As(err, &errs) {
			for _, e := range errs {
				d.log.Error("config refused, still relaying with the previous one", "error", e.Error())
			}
		} else {
			d.log.Error("reload failed, still relaying with the previous one", "error", err)
		}
		return current
	}
	d.metrics.reloadOK.Set(1)
	d.metrics.reloadTime.SetToCurrentTime()
	d.metrics.reloads.WithLabelValues("success").Inc()
	d.metrics.generation.Add(1)
	d.log.Info("reloaded", "routes", len(ro.Routes))
	return ro
}

func sameLimits(a, b relay.Options) bool {
	return a.ConnectTimeout == b.ConnectTimeout && a.IdleTimeout == b.IdleTimeout &&
		a.MaxConnsPerSource == b.MaxConnsPerSource && a.UDPFlowTimeout == b.UDPFlowTimeout
}

func (d *Relay) load() (relay.Options, string, error) {
	ro, admin, err := d.opts.Load()
	if err != nil {
		return ro, "", err
	}
	ro.Log = d.log
	ro.Metrics = d.rm
	return ro, admin, nil
}

func (d *Relay) speedtest() (*SpeedtestEndpoint, error) {
	if d.opts.Speedtest == nil {
		return nil, nil
	}
	return d.opts.Speedtest()
}

// Addr returns the bound address of a route, of "admin" or of "speedtest".
func (d *Relay) Addr(route string) net.Addr {
	if route == "admin" && d.admin != nil {
		return d.admin.Addr()
	}
	if s := d.speed.Load(); route == "speedtest" && s != nil {
		return s.ln.Addr()
	}
	return d.r.Addr(route)
}

func (d *Relay) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", d.metrics.handler(d.prom))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// RelayFromConfig derives the relay's routes from a lab file: 80 forwards to
// gateway.public.http, 443 to gateway.public.https (with the ClientHello
// peeked for SNI and ALPN), and every public tcp/udp port to the same port on
// the gateway.
func RelayFromConfig(cfg *config.Config) (relay.Options, string, error) {
	rc := cfg.Relay
	if rc == nil {
		return relay.Options{}, "", errors.New("the file has no relay section: add relay: { gateway: <the gateway's VPN address> }")
	}
	pub := cfg.Gateway.Public
	if pub == nil {
		return relay.Options{}, "", errors.New("the file has no gateway.public section: the relay forwards only to public listeners")
	}
	listen := func(port int) string { return net.JoinHostPort(rc.Listen.String(), strconv.Itoa(port)) }
	target := func(port int) string { return net.JoinHostPort(rc.Gateway.String(), strconv.Itoa(port)) }
	var routes []relay.Route
	var probes []string
	for _, l := range []struct {
		name  string
		port  int
		addrs []string
		peek  bool
	}{{"http", 80, pub.HTTP, false}, {"https", 443, pub.HTTPS, true}} {
		if len(l.addrs) == 0 {
			continue
		}
		port, err := portOf(l.addrs[0])
		if err != nil {
			return relay.Options{}, "", fmt.Errorf("gateway.public.%s: %w", l.name, err)
		}
		routes = append(routes, relay.Route{Name: l.name, Proto: "tcp", Listen: listen(l.port), Target: target(port), PeekTLS: l.peek})
		if !l.peek {
			probes = append(probes, target(port)) // the gateway's plain-HTTP public listener answers a probe
		}
	}
	for _, s := range cfg.Services {
		if s.Expose != config.Public {
			continue
		}
		for _, p := range []struct {
			proto  string
			routes []config.L4Route
		}{{"tcp", s.TCP}, {"udp", s.UDP}} {
			for _, r := range p.routes {
				routes = append(routes, relay.Route{
					Name:   fmt.Sprintf("%s/%s/%d", s.Name, p.proto, r.Port),
					Proto:  p.proto,
					Listen: listen(r.Port),
					Target: target(r.Port),
				})
			}
		}
	}
	sort.SliceStable(routes, func(i, j int) bool { return routes[i].Name < routes[j].Name })
	return relay.Options{
		Routes:            routes,
		ConnectTimeout:    rc.ConnectTimeout,
		IdleTimeout:       rc.IdleTimeout,
		MaxConnsPerSource: rc.MaxConnsPerSource,
		UDPFlowTimeout:    rc.UDPFlowTimeout,
		ProbeTargets:      probes,
	}, rc.Admin, nil
}

func portOf(addr string) (int, error) {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return int(ap.Port()), nil
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(p)
}
