package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/gateway"
	"github.com/labgate/labgate/internal/history"
	"github.com/labgate/labgate/internal/status"
)

// The status page: the history store in state_dir, the image cache, the
// status.Server on the admin listener and, with status.public, on its own
// host on the service listeners. All of it outlives generations.
//
// Until the health monitor is wired in, what the page shows of a service is
// what the gateway knows: its backends' health (active checks where the file
// has them, failed requests otherwise), sampled every sampleEvery into the
// history.

// defaultSampleEvery is how often the services' states are recorded.
const defaultSampleEvery = 30 * time.Second

type statusPage struct {
	relay       *relayPath
	sampleEvery time.Duration

	mu        sync.Mutex // serialises update and stop
	store     *history.Store
	retention history.Retention // the store's
	storeStop func()
	images    *status.Images
	imagesKey []config.StatusImage
	sampling  func() // stops the sampler

	cfg      atomic.Pointer[config.Config]
	gw       atomic.Pointer[gateway.Gateway]
	gens     atomic.Int64
	revision atomic.Pointer[string]
	lastRun  atomic.Pointer[time.Time] // of the sampler
	admin    atomic.Pointer[status.Server]
	public   atomic.Pointer[status.Server] // nil without status.public
}

func newStatusPage(relay *relayPath) *statusPage {
	return &statusPage{relay: relay, sampleEvery: defaultSampleEvery}
}

// update follows a newly applied generation. d.mu is held.
func (sp *statusPage) update(cfg *config.Config, g *generation, gens int, log *slog.Logger) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.cfg.Store(cfg)
	sp.gw.Store(g.gw)
	sp.gens.Store(int64(gens))
	rev := revisionOf(cfg)
	sp.revision.Store(&rev)

	// The history: reopened only when state_dir or the retention changes.
	path := filepath.Join(cfg.StateDir, history.FileName)
	ret := history.Retention(cfg.Status.History)
	if sp.store == nil || sp.store.Path() != path || sp.retention != ret {
		sp.closeStore()
		st, err := history.Open(path, history.Options{Retention: ret, Log: log})
		if err != nil {
			log.Error("the status page runs without history", "error", err)
		} else {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = st.Run(ctx) }()
			sp.store, sp.retention, sp.storeStop = st, ret, func() { cancel(); <-done; st.Close() }
			sctx, scancel := context.WithCancel(context.Background())
			sdone := make(chan struct{})
			go func() { defer close(sdone); sp.sample(sctx, st, log) }()
			sp.sampling = func() { scancel(); <-sdone }
		}
	}

	// The image cache: rebuilt only when status.images changes.
	if sp.images == nil || !reflect.DeepEqual(sp.imagesKey, cfg.Status.Images) {
		var srcs []status.ImageSource
		for _, im := range cfg.Status.Images {
			srcs = append(srcs, status.ImageSource{Name: im.Name, URL: im.URL.String(), Interval: im.Interval, Public: im.Public})
		}
		old := sp.images
		sp.images = status.NewImages(status.ImagesOptions{Sources: srcs, Log: log.With("part", "image cache")})
		sp.imagesKey = cfg.Status.Images
		if old != nil {
			go old.Close()
		}
	}

	var hist status.History
	if sp.store != nil {
		hist = sp.store
	}
	opts := status.Options{Source: status.SourceFunc(sp.snapshot), History: hist, Images: sp.images, Title: cfg.Status.Title, Log: log}
	sp.admin.Store(status.New(opts))
	if cfg.Status.Public != nil {
		opts.Public = true
		sp.public.Store(status.New(opts))
	} else {
		sp.public.Store(nil)
	}
}

func (sp *statusPage) closeStore() {
	if sp.sampling != nil {
		sp.sampling()
		sp.sampling = nil
	}
	if sp.storeStop != nil {
		sp.storeStop()
	}
	sp.store, sp.storeStop = nil, nil
}

// stop stops the sampler, the compaction and the image fetches, and closes
// the history.
func (sp *statusPage) stop() {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.closeStore()
	if sp.images != nil {
		sp.images.Close()
	}
}

// revisionOf names the config that serves: the first 12 hex digits of the
// file's SHA-256 ("" when it was not read from a file).
func revisionOf(cfg *config.Config) string {
	if cfg.Path == "" {
		return ""
	}
	b, err := os.ReadFile(cfg.Path)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:6])
}

// sample records every service's state every sampleEvery until ctx is done.
func (sp *statusPage) sample(ctx context.Context, st *history.Store, log *slog.Logger) {
	t := time.NewTicker(sp.sampleEvery)
	defer t.Stop()
	for {
		now := time.Now()
		snap := sp.snapshot()
		smps := make([]history.Sample, 0, len(snap.Services))
		for _, s := range snap.Services {
			smps = append(smps, history.Sample{Service: s.Name, Time: now, State: history.ParseState(s.State)})
		}
		if err := st.RecordAll(smps); err != nil {
			log.Warn("recording the health history failed", "error", err)
		}
		sp.lastRun.Store(&now)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// snapshot is the status.Source: what the running generation knows now.
func (sp *statusPage) snapshot() status.Snapshot {
	cfg := sp.cfg.Load()
	if cfg == nil {
		return status.Snapshot{}
	}
	snap := status.Snapshot{Generation: int(sp.gens.Load())}
	if r := sp.revision.Load(); r != nil {
		snap.Revision = *r
	}
	var checked time.Time
	if t := sp.lastRun.Load(); t != nil {
		checked = *t
	}
	backends := map[string][]gateway.BackendState{}
	if gw := sp.gw.Load(); gw != nil {
		for _, b := range gw.Backends() {
			backends[b.Service] = append(backends[b.Service], b)
		}
	}
	for _, s := range cfg.Services {
		svc := status.Service{Name: s.Name, Class: s.Expose.String(), Hosts: s.Hosts, LastCheck: checked}
		for _, r := range s.TCP {
			svc.Ports = append(svc.Ports, "tcp/"+strconv.Itoa(r.Port))
		}
		for _, r := range s.UDP {
			svc.Ports = append(svc.Ports, "udp/"+strconv.Itoa(r.Port))
		}
		svc.State, svc.Cause = serviceState(s, backends[s.Name])
		for _, b := range backends[s.Name] {
			svc.Backends = append(svc.Backends, status.Backend{URL: b.Backend, Up: b.Up})
		}
		snap.Services = append(snap.Services, svc)
	}
	snap.Relay = sp.relay.status()
	return snap
}

// serviceState derives a service's state from its backends: all up is up,
// some down is degraded, all down is down. labgate serves static and echo
// services itself: up. What labgate cannot see yet (tcp ports, TLS
// passthrough) is unknown.
func serviceState(s *config.Service, bs []gateway.BackendState) (state, cause string) {
	switch {
	case s.Static != "" || s.Echo:
		return "up", ""
	case len(bs) == 0:
		return "unknown", ""
	}
	var down []string
	for _, b := range bs {
		if !b.Up {
			down = append(down, b.Backend)
		}
	}
	switch {
	case len(down) == 0:
		return "up", ""
	case len(down) == len(bs):
		return "down", "no backend takes requests: " + strings.Join(down, ", ")
	}
	return "degraded", "down: " + strings.Join(down, ", ")
}

// status returns the relay path as the status page shows it; nil when it
// is not measured.
func (r *relayPath) status() *status.Relay {
	r.mu.Lock()
	p, key := r.p, r.key
	r.mu.Unlock()
	if p == nil {
		return nil
	}
	rel := &status.Relay{Address: key.relay.String(), State: "unknown", Samples: []status.RelaySample{}}
	for _, res := range p.History() {
		rel.Samples = append(rel.Samples, status.RelaySample{Time: res.Time, RTT: res.RTT, Down: res.Down, Up: res.Up, Err: res.Err})
	}
	if n := len(rel.Samples); n > 0 {
		last := rel.Samples[n-1]
		switch {
		case time.Since(last.Time) > 3*key.interval:
			rel.State = "unknown" // not measured lately
		case last.Err != "":
			rel.State = "down"
		default:
			rel.State = "up"
		}
	}
	return rel
}

// adminHandler serves the status page on the admin listener.
func (sp *statusPage) adminHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := sp.admin.Load()
		if s == nil {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		s.ServeHTTP(w, r)
	})
}

// wrap puts the public status page in front of a service listener's
// handler h: requests for host go to the page (on plain-HTTP listeners, a
// redirect to HTTPS on httpsPort), everything else to h.
func (sp *statusPage) wrap(host string, h http.Handler, plainHTTP bool, httpsPort int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !sameHost(r.Host, host) {
			h.ServeHTTP(w, r)
			return
		}
		s := sp.public.Load()
		if s == nil {
			h.ServeHTTP(w, r)
			return
		}
		if plainHTTP {
			target := "https://" + host
			if httpsPort != 443 && httpsPort != 0 {
				target += ":" + strconv.Itoa(httpsPort)
			}
			http.Redirect(w, r, target+r.URL.RequestURI(), http.StatusPermanentRedirect)
			return
		}
		s.ServeHTTP(w, r)
	})
}

func sameHost(hostport, host string) bool {
	h := hostport
	if hh, _, err := net.SplitHostPort(hostport); err == nil {
		h = hh
	}
	return strings.EqualFold(strings.TrimSuffix(h, "."), host)
}

// statusHost is the public status page's host, "" without one.
func statusHost(cfg *config.Config) string {
	if cfg.Status.Public == nil {
		return ""
	}
	return cfg.Status.Public.Host
}
