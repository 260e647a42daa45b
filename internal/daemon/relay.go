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

	"github.com/labgate/labgate/internal/listen"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/relay"
)

// RelaySetup is everything one load gives the relay daemon.
type RelaySetup struct {
	Relay     relay.Options
	Admin     string             // /metrics and /healthz; "" serves none
	Speedtest *SpeedtestEndpoint // the relay path endpoint; nil serves none
}

// RelayOptions configure `labgate relay`.
type RelayOptions struct {
	// Load returns the relay's setup: from the file (see RelayFromConfig)
	// or from flags. Called at start and on every reload.
	Load func() (RelaySetup, error)
	// Watch is the file to follow ("" follows nothing; SIGHUP still reloads).
	Watch   string
	Stderr  io.Writer
	Version string
	Ready   func(*Relay)
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
	setup, err := d.load()
	if err != nil {
		return err
	}
	ro, admin := setup.Relay, setup.Admin
	r, err := relay.New(ro)
	if err != nil {
		return err
	}
	d.r = r
	if admin != "" {
		ln, err := listen.TCP(admin, d.log)
		if err != nil {
			return fmt.Errorf("listening on %s (relay.admin): %w", admin, err)
		}
		d.admin = ln
		srv := &http.Server{Handler: d.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
	}
	speed, err := updateSpeedServer(nil, setup.Speedtest, d.log)
	if err != nil {
		return err
	}
	d.speed.Store(speed)
	defer func() { d.speed.Load().close() }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	// "forwarding" (and Ready) only once every route is bound: a client
	// or supervisor told so earlier would find the ports closed.
	select {
	case <-r.Bound():
	case err := <-done:
		return err
	}

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
	setup, err := d.load()
	if err == nil {
		s, serr := updateSpeedServer(d.speed.Load(), setup.Speedtest, d.log)
		if serr != nil {
			d.log.Error("relay path endpoint not moved, still serving the previous one", "error", serr)
		}
		d.speed.Store(s)
	}
	ro := setup.Relay
	if err == nil && reflect.DeepEqual(ro, current) {
		d.metrics.reloads.WithLabelValues("unchanged").Inc()
		return current
	}
	if err == nil {
		err = d.r.Update(ro)
	}
	if err != nil {
		d.metrics.reloadFailed(d.log, err, "relaying with the previous one")
		return current
	}
	d.metrics.reloadOK.Set(1)
	d.metrics.reloadTime.SetToCurrentTime()
	d.metrics.reloads.WithLabelValues("success").Inc()
	d.metrics.generation.Add(1)
	d.log.Info("reloaded", "routes", len(ro.Routes))
	return ro
}

func (d *Relay) load() (RelaySetup, error) {
	setup, err := d.opts.Load()
	if err != nil {
		return setup, err
	}
	setup.Relay.Log = d.log
	setup.Relay.Metrics = d.rm
	return setup, nil
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
func RelayFromConfig(cfg *config.Config) (RelaySetup, error) {
	rc := cfg.Relay
	if rc == nil {
		return RelaySetup{}, errors.New("the file has no relay section: add relay: { gateway: <the gateway's VPN address> }")
	}
	pub := cfg.Gateway.Public
	if pub == nil {
		return RelaySetup{}, errors.New("the file has no gateway.public section: the relay forwards only to public listeners")
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
			return RelaySetup{}, fmt.Errorf("gateway.public.%s: %w", l.name, err)
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
	ro := relay.Options{
		Routes:            routes,
		ConnectTimeout:    rc.ConnectTimeout,
		IdleTimeout:       rc.IdleTimeout,
		MaxConnsPerSource: rc.MaxConnsPerSource,
		UDPFlowTimeout:    rc.UDPFlowTimeout,
		ProbeTargets:      probes,
	}
	return RelaySetup{Relay: ro, Admin: rc.Admin, Speedtest: RelaySpeedtestFromConfig(cfg)}, nil
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
