package daemon

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/dns"
)

// The DNS side of serve: one Reconciler for the daemon's life, fed every
// config applied, and the embedded DNS server of dns.serve, which keeps its
// sockets across reloads unless dns.serve.listen changes.

type dnsRunner struct {
	reg     prometheus.Registerer
	onEvent func(dns.Event)
	ownFile atomic.Bool // dns.ownership: file in the config last given to the reconciler

	mu       sync.Mutex
	rec      *dns.Reconciler
	recStop  context.CancelFunc
	recDone  chan struct{}
	srv      *dns.Server
	srvAddrs []string // as configured
	srvStop  context.CancelFunc
	srvDone  chan struct{}
}

// fileOwnership reports whether the reconciler keeps ownership in
// dns-owned.json (dns.ownership: file) rather than in TXT records: what a
// conflict's alert advises depends on it.
func (r *dnsRunner) fileOwnership() bool { return r.ownFile.Load() }

func newDNSRunner(reg prometheus.Registerer, onEvent func(dns.Event)) *dnsRunner {
	return &dnsRunner{reg: reg, onEvent: onEvent}
}

// update follows cfg: the reconciler reconciles against it, the embedded
// server answers from it (rebinding only for new listen addresses; if they
// cannot be bound, the running server keeps serving the new answers).
func (r *dnsRunner) update(cfg *config.Config, log *slog.Logger) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rec == nil {
		r.rec = dns.NewReconciler(dns.ReconcilerOptions{Log: log.With("component", "dns"), Registerer: r.reg, OnEvent: r.event})
		ctx, cancel := context.WithCancel(context.Background())
		r.recStop, r.recDone = cancel, make(chan struct{})
		go func() {
			defer close(r.recDone)
			_ = r.rec.Run(ctx)
		}()
	}
	r.ownFile.Store(cfg.DNS.Ownership == "file")
	r.rec.Update(cfg)

	var want []string
	if cfg.DNS.Serve != nil {
		want = cfg.DNS.Serve.Listen
	}
	if r.srv != nil && slices.Equal(want, r.srvAddrs) {
		r.srv.Update(cfg)
		return
	}
	var next *dns.Server
	if len(want) > 0 {
		var err error
		next, err = dns.Listen(want, log)
		if err != nil && r.srv != nil {
			// The new addresses may share a port with the running server's
			// (an address added next to one it has): free them and try
			// again, and bind the old ones again if that fails too.
			old := r.srvAddrs
			r.stopServerLocked()
			if next, err = dns.Listen(want, log); err != nil {
				log.Error("the embedded DNS server cannot listen", "error", err)
				if next, err = dns.Listen(old, log); err != nil {
					log.Error("the embedded DNS server cannot listen again on its previous addresses", "error", err)
					return
				}
				want = old
			}
		} else if err != nil {
			log.Error("the embedded DNS server cannot listen", "error", err)
			return
		}
	}
	r.stopServerLocked()
	if next == nil {
		return
	}
	next.Update(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	r.srv, r.srvAddrs, r.srvStop, r.srvDone = next, want, cancel, make(chan struct{})
	done := r.srvDone
	go func() {
		defer close(done)
		if err := next.Run(ctx); err != nil {
			log.Error("the embedded DNS server stopped", "error", err)
		}
	}()
	log.Info("answering DNS for the lab", "zone", cfg.DNS.Zone, "listen", next.Addrs())
}

func (r *dnsRunner) stopServerLocked() {
	if r.srv == nil {
		return
	}
	r.srvStop()
	<-r.srvDone
	r.srv, r.srvAddrs = nil, nil
}

// stop stops the reconciler and the server and waits for them.
func (r *dnsRunner) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopServerLocked()
	if r.rec != nil {
		r.recStop()
		<-r.recDone
		r.rec = nil
	}
}

// status is what the reconciler found last (nothing before it runs).
func (r *dnsRunner) status() dns.Status {
	r.mu.Lock()
	rec := r.rec
	r.mu.Unlock()
	if rec == nil {
		return dns.Status{}
	}
	return rec.Status()
}

// event hands reconciler events to the daemon (alerts, see problems.go).
func (r *dnsRunner) event(e dns.Event) {
	if r.onEvent != nil {
		r.onEvent(e)
	}
}
