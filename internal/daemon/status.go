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
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/dns"
	"github.com/labgate/labgate/internal/gateway"
	"github.com/labgate/labgate/internal/health"
	"github.com/labgate/labgate/internal/history"
	"github.com/labgate/labgate/internal/status"
)

// The status page: the history store in state_dir, the image cache, the
// status.Server on the admin listener and, with status.public, on its own
// host on the service listeners. All of it outlives generations.
//
// What the page shows of a service comes from the health monitor: its
// state, cause and latency, and every check result is recorded in the
// history as it arrives (see record). A service without health checks
// shows what the gateway knows of its backends (active backend checks
// where the file has them, failed requests otherwise; static and echo
// services are up, layer-4 and passthrough services unknown), made
// degraded by the monitor's passive signals when too many of its proxied
// requests fail or are slow; that view is sampled into the history every
// sampleEvery. Certificates come from the generation's source (ACME or the
// internal CA), DNS from the reconciler, the revision from git when the
// config follows it.

// defaultSampleEvery is how often the states of services without health
// checks are recorded.
const defaultSampleEvery = 30 * time.Second

// relaySeries is the history series of the relay path's own check (no
// service can have this name: it holds a space).
const relaySeries = "relay path"

// expirer is what the status page needs of a certificate source: ACME's
// and the internal CA's have it.
type expirer interface {
	Expiry(name string) (time.Time, bool)
}

type statusPage struct {
	relay       *relayPath
	sampleEvery time.Duration
	// What the page reads of the rest of the daemon (set by New).
	health      func() health.Snapshot
	dnsStatus   func() dns.Status
	gitRevision func() string // "" when not following git
	problems    func() []status.Problem
	// damaged reports a history.db that Open moved aside (statefiles.go).
	damaged func(stateDir, aside, lost string)

	mu        sync.Mutex // serialises update and stop
	store     *history.Store
	retention history.Retention // the store's
	storeStop func()
	images    *status.Images
	imagesKey []config.StatusImage
	sampling  func() // stops the sampler

	cfg      atomic.Pointer[config.Config]
	gen      atomic.Pointer[generation]
	gens     atomic.Int64
	revision atomic.Pointer[string]
	lastRun  atomic.Pointer[time.Time] // of the sampler
	hist     atomic.Pointer[history.Store]
	log      atomic.Pointer[slog.Logger]
	admin    atomic.Pointer[status.Server]
	public   atomic.Pointer[status.Server] // nil without status.public
}

func newStatusPage(relay *relayPath) *statusPage {
	return &statusPage{relay: relay, sampleEvery: defaultSampleEvery,
		health:      func() health.Snapshot { return health.Snapshot{} },
		dnsStatus:   func() dns.Status { return dns.Status{} },
		gitRevision: func() string { return "" },
		problems:    func() []status.Problem { return nil },
	}
}

// update follows a newly applied generation. d.mu is held.
func (sp *statusPage) update(cfg *config.Config, g *generation, gens int, log *slog.Logger) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.cfg.Store(cfg)
	sp.gen.Store(g)
	sp.log.Store(log)
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
			if aside := st.Damaged(); aside != "" && sp.damaged != nil {
				sp.damaged(cfg.StateDir, aside, "The health history was damaged: the status page's uptime and latency history is lost and starts again empty.")
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = st.Run(ctx) }()
			sp.store, sp.retention, sp.storeStop = st, ret, func() { cancel(); <-done; st.Close() }
			sp.hist.Store(st)
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
			srcs = append(srcs, status.ImageSource{Name: im.Name, URL: im.URL.String(), BearerToken: im.BearerToken.Value(), Interval: im.Interval, Public: im.Public})
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
	sp.hist.Store(nil)
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

// record is the health monitor's OnResult: each check result goes into the
// history as its own series (service, check; an outside check's series is
// "<check> outside", the relay path's is relaySeries), and the service's
// state after it into the service's series, with the latency of inside
// checks (straight to the backend: the relay's share would blur it).
func (sp *statusPage) record(res health.Result, svc health.State) {
	st := sp.hist.Load()
	if st == nil {
		return
	}
	check := res.Check
	if res.Scope == health.Outside {
		check += " outside"
	}
	smps := []history.Sample{{Service: res.Service, Check: check, Time: res.Time, State: historyState(res.State), Latency: res.Latency}}
	if res.Service == "" {
		smps[0].Service, smps[0].Check = relaySeries, res.Check
	} else {
		own := history.Sample{Service: res.Service, Time: res.Time, State: historyState(svc)}
		if res.Scope == health.Inside {
			own.Latency = res.Latency
		}
		smps = append(smps, own)
	}
	// Record, unlike RecordAll, shares one transaction (one fsync) with
	// the results other checks record at the same moment: the result and
	// its service's state go in one.
	if err := st.Record(smps...); err != nil {
		if log := sp.log.Load(); log != nil {
			log.Warn("recording the health history failed", "error", err)
		}
	}
}

func historyState(s health.State) history.State { return history.ParseState(s.String()) }

// sample records the state of every service without health checks every
// sampleEvery until ctx is done; the others are recorded by record.
func (sp *statusPage) sample(ctx context.Context, st *history.Store, log *slog.Logger) {
	t := time.NewTicker(sp.sampleEvery)
	defer t.Stop()
	for {
		now := time.Now()
		snap := sp.build(sp.health())
		var smps []history.Sample
		for _, s := range snap.Services {
			if !s.checked {
				smps = append(smps, history.Sample{Service: s.Name, Time: now, State: history.ParseState(s.State)})
			}
		}
		if len(smps) > 0 {
			if err := st.RecordAll(smps); err != nil {
				log.Warn("recording the health history failed", "error", err)
			}
		}
		sp.lastRun.Store(&now)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// snapshot is the status.Source: what is known now.
func (sp *statusPage) snapshot() status.Snapshot {
	hs := sp.health()
	b := sp.build(hs)
	snap := b.Snapshot
	for _, s := range b.Services {
		snap.Services = append(snap.Services, s.Service)
	}
	snap.Problems = sp.problems()
	if p, ok := relayProblem(hs); ok { // openproblems.go
		snap.Problems = append([]status.Problem{p}, snap.Problems...)
	}
	return snap
}

// built is a snapshot whose services say whether health checks them.
type built struct {
	status.Snapshot
	Services []builtService
}

type builtService struct {
	status.Service
	checked bool // by the health monitor: the state is its
}

func (sp *statusPage) build(hs health.Snapshot) built {
	cfg := sp.cfg.Load()
	if cfg == nil {
		return built{}
	}
	snap := built{Snapshot: status.Snapshot{Generation: int(sp.gens.Load())}}
	if r := sp.gitRevision(); r != "" {
		snap.Revision = r
	} else if r := sp.revision.Load(); r != nil {
		snap.Revision = *r
	}
	var sampled time.Time
	if t := sp.lastRun.Load(); t != nil {
		sampled = *t
	}
	g := sp.gen.Load()
	backends := map[string][]gateway.BackendState{}
	var certSrc expirer
	if g != nil {
		for _, b := range g.gw.Backends() {
			backends[b.Service] = append(backends[b.Service], b)
		}
		certSrc, _ = g.certs.(expirer)
	}
	dnsSt := sp.dnsStatus()
	for _, s := range cfg.Services {
		svc := status.Service{Name: s.Name, Class: s.Expose.String(), Hosts: s.Hosts}
		for _, r := range s.TCP {
			svc.Ports = append(svc.Ports, "tcp/"+strconv.Itoa(r.Port))
		}
		for _, r := range s.UDP {
			svc.Ports = append(svc.Ports, "udp/"+strconv.Itoa(r.Port))
		}
		for _, b := range backends[s.Name] {
			svc.Backends = append(svc.Backends, status.Backend{URL: b.Backend, Up: b.Up})
		}
		h, ok := hs.Service(s.Name)
		checked := ok && len(h.Checks) > 0
		if checked {
			svc.State, svc.Cause = h.State.String(), h.Reason
			svc.LastCheck, svc.Latency = lastResult(h.Checks)
		} else {
			svc.State, svc.Cause = serviceState(s, backends[s.Name])
			svc.LastCheck = sampled
			if ok && h.State == health.Degraded && (svc.State == "up" || svc.State == "unknown") {
				svc.State, svc.Cause = "degraded", h.Reason // its proxied requests fail or are slow
			}
		}
		if certSrc != nil && s.Passthrough == nil {
			for _, host := range s.Hosts {
				if exp, ok := certSrc.Expiry(certName(cfg, s, host)); ok && (svc.CertExpiry.IsZero() || exp.Before(svc.CertExpiry)) {
					svc.CertExpiry = exp
				}
			}
		}
		svc.DNS, svc.DNSDetail = dnsState(dnsSt, s.Hosts)
		snap.Services = append(snap.Services, builtService{Service: svc, checked: checked})
	}
	snap.Relay = relayStatus(sp.relay.status(), hs.Relay)
	return snap
}

// lastResult is when a service's checks last ran and the latency of the
// newest result of an inside check (of an outside one when it has none).
func lastResult(checks []health.CheckStatus) (last time.Time, latency time.Duration) {
	var in, out time.Time
	for _, c := range checks {
		if c.Last == nil {
			continue
		}
		if c.Last.Time.After(last) {
			last = c.Last.Time
		}
		switch {
		case c.Scope == health.Inside && c.Last.Time.After(in):
			in, latency = c.Last.Time, c.Last.Latency
		case c.Scope == health.Outside && in.IsZero() && c.Last.Time.After(out):
			out, latency = c.Last.Time, c.Last.Latency
		}
	}
	return last, latency
}

// certName is the name of the certificate that serves host (the domain's
// wildcard for a private host under private_wildcard).
func certName(cfg *config.Config, s *config.Service, host string) string {
	if cfg.TLS.PrivateWildcard && s.Expose == config.Private && cfg.Domain != "" && isChildOf(host, cfg.Domain) {
		return "*." + cfg.Domain
	}
	return host
}

// dnsState sums up the records of a service's hosts: the worst state of
// any (failing, conflict, pending, ok), "" when labgate manages none.
func dnsState(st dns.Status, hosts []string) (state, detail string) {
	rank := map[string]int{"": 0, dns.HostOK: 1, dns.HostPending: 2, dns.HostConflict: 3, dns.HostFailing: 4}
	var details []string
	for _, h := range hosts {
		s, d := st.Host(h)
		if rank[s] > rank[state] {
			state = s
		}
		if d != "" && !slices.Contains(details, d) {
			details = append(details, d)
		}
	}
	return state, strings.Join(details, "; ")
}

// relayStatus joins the relay path as the speed test measures it (nil
// when it does not) and as the health monitor's relay check sees it (nil
// without outside checks): the worse known state wins.
func relayStatus(speed *status.Relay, check *health.CheckStatus) *status.Relay {
	if check == nil {
		return speed
	}
	rel := speed
	if rel == nil {
		rel = &status.Relay{State: "unknown", Samples: []status.RelaySample{}}
	}
	rank := map[string]int{"unknown": 0, "up": 1, "degraded": 2, "down": 3}
	if st := check.State.String(); rank[st] > rank[rel.State] {
		rel.State = st
		if check.LastError != "" {
			rel.Cause = "relay check: " + check.LastError
		}
	}
	return rel
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
			rel.State, rel.Cause = "down", "speed test: "+last.Err
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
