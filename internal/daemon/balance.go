package daemon

import (
	"sync"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/gateway"
	"github.com/labgate/labgate/internal/health"
)

// balancing carries the health monitor's results to the gateway's rotation,
// so that each backend is polled once per interval, not twice: for a
// service whose health has an http check (health.BalancingCheck), that
// check's outcome on each backend, every round, takes the backend out of
// rotation or puts it back, exactly as the gateway's own probe does for the
// other services. It outlives generations and keeps the last outcome of
// each backend: a new generation starts from it, so a reload keeps a
// backend that is down out of rotation (the monitor keeps its unchanged
// checks running and does not check again at once).
type balancing struct {
	mu   sync.Mutex
	gw   *gateway.Gateway    // the running generation's; nil before the first
	keep map[backendKey]bool // the backends the running config balances by checks; nil before the first
	last map[backendKey]error
}

type backendKey struct{ service, backend string }

func newBalancing() *balancing { return &balancing{last: map[backendKey]error{}} }

// observe is health.Env.OnBackend.
func (b *balancing) observe(service, backend string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := backendKey{service, backend}
	if b.keep != nil && !b.keep[k] {
		return // a check of a service the running config dropped, still ending
	}
	b.last[k] = err
	if b.gw != nil {
		b.gw.SetBackendHealth(service, backend, err)
	}
}

// lastCheck is gateway.Options.LastCheck.
func (b *balancing) lastCheck(service, backend string) (known, passed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	err, ok := b.last[backendKey{service, backend}]
	return ok, err == nil
}

// use points the results at gw, the gateway of the generation built from
// cfg that now serves. Results that arrived since gw was built are applied
// to it; those of backends cfg no longer balances by checks are forgotten.
func (b *balancing) use(gw *gateway.Gateway, cfg *config.Config) {
	keep := map[backendKey]bool{}
	for _, s := range cfg.Services {
		if health.BalancingCheck(s) == "" {
			continue
		}
		for _, u := range s.Backends {
			keep[backendKey{s.Name, u.Scheme + "://" + u.Host}] = true
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gw, b.keep = gw, keep
	for k, err := range b.last {
		if !keep[k] {
			delete(b.last, k)
			continue
		}
		gw.SetBackendHealth(k.service, k.backend, err)
	}
}

// fed is gateway.Options.Fed for cfg.
func fed(cfg *config.Config) func(string) bool {
	byName := map[string]bool{}
	for _, s := range cfg.Services {
		byName[s.Name] = health.BalancingCheck(s) != ""
	}
	return func(service string) bool { return byName[service] }
}

// balanceOptions sets what opts needs for the gateway of cfg to follow the
// monitor's checks. Without a monitor (no serve), the gateway probes.
func (d *Daemon) balanceOptions(cfg *config.Config, opts *gateway.Options) {
	if d.checks == nil {
		return
	}
	opts.Fed = fed(cfg)
	opts.LastCheck = d.checks.lb.lastCheck
}
