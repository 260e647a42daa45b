package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labgate/labgate/internal/listen"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/speedtest"
)

// The gateway's side: one Prober for the file's relay.speedtest, which lives
// across generations and is replaced only when its settings change.

// relayPathFile is the history of the measurements, in state_dir.
const relayPathFile = "relay-path.json"

// relayPath runs the Prober of the current config, if it has relay.speedtest.
type relayPath struct {
	metrics *speedtest.Metrics
	// damaged reports a relay-path.json that the Prober moved aside
	// (statefiles.go).
	damaged func(stateDir, aside, lost string)

	mu     sync.Mutex
	key    relayPathKey // of the running Prober
	p      *speedtest.Prober
	cancel context.CancelFunc
	done   chan struct{}
}

// relayPathKey is what a Prober is built from: a change restarts it.
type relayPathKey struct {
	relay     netip.AddrPort
	from      netip.Addr
	interval  time.Duration
	budget    int
	samples   int
	stateFile string
}

func relayPathKeyOf(cfg *config.Config) (relayPathKey, bool) {
	if cfg.Relay == nil || cfg.Relay.Speedtest == nil {
		return relayPathKey{}, false
	}
	s := cfg.Relay.Speedtest
	return relayPathKey{relay: s.Listen, from: cfg.Relay.Gateway, interval: s.Interval, budget: s.Budget,
		samples: s.Samples, stateFile: filepath.Join(cfg.StateDir, relayPathFile)}, true
}

// update starts, restarts or stops the Prober to follow cfg.
func (r *relayPath) update(cfg *config.Config, log *slog.Logger) {
	key, on := relayPathKeyOf(cfg)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p != nil && on && key == r.key {
		return
	}
	r.stopLocked()
	if !on {
		return
	}
	log = log.With("relay", key.relay.String())
	p := speedtest.New(speedtest.Options{
		URL:       "http://" + key.relay.String() + "/",
		LocalAddr: key.from,
		Interval:  key.interval,
		Budget:    key.budget,
		Samples:   key.samples,
		StateFile: key.stateFile,
		Log:       log,
		Metrics:   r.metrics,
	})
	if aside := p.Damaged(); aside != "" && r.damaged != nil {
		r.damaged(cfg.StateDir, aside, "The relay path measurements were damaged: those kept for the status page are lost and start again empty.")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.Run(ctx)
	}()
	r.key, r.p, r.cancel, r.done = key, p, cancel, done
	log.Info("measuring the relay path", "from", key.from, "interval", key.interval, "budget_bytes", key.budget)
}

// stop stops the Prober, if one runs, and waits for it.
func (r *relayPath) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopLocked()
}

func (r *relayPath) stopLocked() {
	if r.p == nil {
		return
	}
	r.cancel()
	<-r.done
	r.key, r.p, r.cancel, r.done = relayPathKey{}, nil, nil, nil
}

// relayPathReport is the JSON of GET /api/relay-path.
type relayPathReport struct {
	Relay           string             `json:"relay"`            // host:port of the relay's endpoint
	IntervalSeconds float64            `json:"interval_seconds"` // between measurements
	BudgetBytes     int                `json:"budget_bytes"`     // per measurement
	Results         []speedtest.Result `json:"results"`          // oldest first
}

// serveHTTP answers GET /api/relay-path with the history of measurements.
func (r *relayPath) serveHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	p, key := r.p, r.key
	r.mu.Unlock()
	if p == nil {
		http.Error(w, "the relay path is not measured: add relay.speedtest to the file", http.StatusNotFound)
		return
	}
	rep := relayPathReport{Relay: key.relay.String(), IntervalSeconds: key.interval.Seconds(), BudgetBytes: key.budget, Results: p.History()}
	if rep.Results == nil {
		rep.Results = []speedtest.Result{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(rep)
}

// The relay's side: the endpoint the gateway measures against.

// SpeedtestEndpoint is where `labgate relay` serves the relay path
// measurement, and to whom.
type SpeedtestEndpoint struct {
	Listen netip.AddrPort // on the relay's VPN address
	Allow  netip.Addr     // the only source served: the gateway's VPN address
}

// RelaySpeedtestFromConfig returns the endpoint of the file's
// relay.speedtest, or nil when the file has none.
func RelaySpeedtestFromConfig(cfg *config.Config) *SpeedtestEndpoint {
	if cfg.Relay == nil || cfg.Relay.Speedtest == nil {
		return nil
	}
	return &SpeedtestEndpoint{Listen: cfg.Relay.Speedtest.Listen, Allow: cfg.Relay.Gateway}
}

// speedServer serves speedtest.Handler on one bound address.
type speedServer struct {
	listen netip.AddrPort
	allow  atomic.Pointer[netip.Addr] // changes on reload without rebinding
	ln     net.Listener
	srv    *http.Server
}

func startSpeedServer(ep SpeedtestEndpoint, log *slog.Logger) (*speedServer, error) {
	ln, err := listen.TCP(ep.Listen.String(), log)
	if err != nil {
		return nil, fmt.Errorf("listening on %s (relay.speedtest.listen): %w", ep.Listen, err)
	}
	s := &speedServer{listen: ep.Listen, ln: ln}
	s.allow.Store(&ep.Allow)
	s.srv = &http.Server{
		Handler:           speedtest.Handler(func(a netip.Addr) bool { return a == *s.allow.Load() }),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("relay path endpoint stopped", "addr", ep.Listen, "error", err)
		}
	}()
	log.Info("serving the relay path measurement", "addr", ln.Addr(), "to", ep.Allow)
	return s, nil
}

// close stops s; measurements in flight end with it.
func (s *speedServer) close() {
	if s != nil {
		s.srv.Close()
	}
}

// updateSpeedServer follows ep: the same address keeps its socket, another
// address is bound before the old one is closed, nil closes it. On failure
// the running endpoint stays.
func updateSpeedServer(cur *speedServer, ep *SpeedtestEndpoint, log *slog.Logger) (*speedServer, error) {
	switch {
	case ep == nil:
		cur.close()
		return nil, nil
	case cur != nil && cur.listen == ep.Listen:
		cur.allow.Store(&ep.Allow)
		return cur, nil
	}
	s, err := startSpeedServer(*ep, log)
	if err != nil {
		return cur, err
	}
	cur.close()
	return s, nil
}
