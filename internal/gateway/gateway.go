package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/labgate/labgate/internal/config"
)

// Options are what a generation's gateway needs besides the config.
type Options struct {
	// Log receives errors and backend health transitions.
	Log *slog.Logger
	// Access receives one record per request; nil: no access log.
	Access *slog.Logger
	// Metrics outlive generations; nil: no metrics.
	Metrics *Metrics
	// HTTPSPort is the port http->https redirects name, per class (omitted when 443).
	HTTPSPort map[config.Class]int
	// Observe, if set, is asked once per service when the generation is
	// built for a function told of every request the service answers (its
	// status code and duration): passive health signals from real traffic.
	// The function is called on the request path and must be cheap.
	Observe func(service string) func(code int, d time.Duration)
	// PassiveCooldown is how long a backend stays down after a failed
	// connection when no active check brings it back sooner; 0: 10s.
	PassiveCooldown time.Duration
	// Fed, if set, reports whether the caller feeds the active health of a
	// service's backends through SetBackendHealth (the health monitor's
	// http check): the gateway then sends those backends no health check
	// of its own. nil: the gateway probes every service with health.
	Fed func(service string) bool
	// LastCheck, if set, tells a fed backend's last known result when the
	// generation is built (known false: none yet, the backend starts in
	// rotation), so that a reload keeps a backend that is down out of
	// rotation until the next result.
	LastCheck func(service, backend string) (known, passed bool)

	// reverseProxyOnly turns the lean HTTP/1.1 upstream path off: every
	// request goes through httputil.ReverseProxy (tests of both paths).
	reverseProxyOnly bool
}

// defaultCooldown is how long a backend that refused a connection is left alone.
const defaultCooldown = 10 * time.Second

// Gateway is the routing state of one config generation.
type Gateway struct {
	log      *slog.Logger
	access   *slog.Logger
	services []*service
	https    [2]*handler // by class, for HTTPS listeners
	http     [2]*handler // by class, for plain-HTTP listeners
	export   *exportGate // closed by Retire
	roots    []*os.Root
	closed   sync.Once
	byName   map[backendKey]*backend // backends of fed services
}

type backendKey struct{ service, backend string }

// New builds the routing state of one generation from cfg: per-class route
// tables, one upstream per backend with its own tuned http.Transport,
// balancers and static file handlers. It starts nothing.
func New(cfg *config.Config, opts Options) (*Gateway, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.PassiveCooldown <= 0 {
		opts.PassiveCooldown = defaultCooldown
	}
	g := &Gateway{log: opts.Log, access: opts.Access, export: &exportGate{}, byName: map[backendKey]*backend{}}
	var errs []error
	for _, sc := range cfg.Services {
		if !sc.HTTP() && sc.Passthrough == nil || len(sc.Hosts) == 0 {
			continue
		}
		s, err := g.newService(sc, cfg.Gateway.Limits, opts)
		if err != nil {
			errs = append(errs, fmt.Errorf("service %s: %w", sc.Name, err))
			continue
		}
		g.services = append(g.services, s)
		if s.fed {
			for _, b := range s.backends {
				g.byName[backendKey{sc.Name, b.name}] = b
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		g.Close()
		return nil, err
	}
	for _, class := range []config.Class{config.Private, config.Public} {
		t := newTable(g.services, class)
		port := opts.HTTPSPort[class]
		g.https[class] = &handler{g: g, class: class, table: t, unknown: opts.Metrics.forService("", class), tls: true}
		g.http[class] = &handler{g: g, class: class, table: t, unknown: opts.Metrics.forService("", class), httpsPort: port}
	}
	return g, nil
}

// Serves reports whether listeners of class serve any service at host (a
// TLS server name or a Host header): on public listeners, false for the
// names of private services, so that a stranger probing names gets no
// certificate that tells a private name exists.
func (g *Gateway) Serves(class config.Class, host string) bool {
	return g.https[class&1].table.serves(normalizeHost(host))
}

// Handler serves HTTPS listeners of class, and plain-HTTP services that set
// allow_http.
func (g *Gateway) Handler(class config.Class) http.Handler { return g.https[class&1] }

// HTTPHandler serves plain-HTTP listeners of class: known hosts are
// redirected to HTTPS (308) unless their service allows plain HTTP, in which
// case it is served; unknown hosts get 404.
func (g *Gateway) HTTPHandler(class config.Class) http.Handler { return g.http[class&1] }

// Run checks the health of backends that have a health check the caller
// does not feed (Options.Fed), and brings back backends marked down by
// failed requests, until ctx is done.
func (g *Gateway) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, s := range g.services {
		for _, b := range s.backends {
			wg.Go(func() { b.watch(ctx) })
		}
	}
	<-ctx.Done()
	wg.Wait()
	return nil
}

// Retire stops g from writing labgate_backend_up: it is called when a newer
// generation has taken over, whose backends own the series from then on (a
// draining generation's checks and failed requests would otherwise set the
// series of a backend the new one shares, or that was deleted).
func (g *Gateway) Retire() {
	g.export.mu.Lock()
	g.export.retired = true
	g.export.mu.Unlock()
}

// exportGate says whether a generation's backends still write their series.
type exportGate struct {
	mu      sync.Mutex
	retired bool
}

// set sets gauge to v unless the generation has been retired.
func (e *exportGate) set(gauge prometheus.Gauge, v float64) {
	if gauge == nil {
		return
	}
	if e == nil {
		gauge.Set(v)
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.retired {
		gauge.Set(v)
	}
}

// Close closes idle upstream connections and open static directories. Call
// it after the generation's servers have drained.
func (g *Gateway) Close() {
	g.closed.Do(func() {
		for _, s := range g.services {
			for _, b := range s.backends {
				b.transport.CloseIdleConnections()
				if b.h1 != nil {
					b.h1.close()
				}
			}
		}
		for _, r := range g.roots {
			r.Close()
		}
	})
}

// table is the route table of one class.
type table struct {
	exact map[string][]*route // by host, longest path first
	wild  map[string][]*route // "*.parent" routes by parent, longest path first
}

type route struct {
	svc    *service
	prefix string // the service's path without trailing slash; "" for "/"
	cm     *classMetrics
	// denied: a private service's route in the public table. Requests it
	// wins are not served there (404), not even by a public service of
	// the same host with a shorter path or a wildcard host: the paths and
	// names a file makes private stay private.
	denied bool
}

// newTable holds the services class may reach: public listeners reach only
// public services; private listeners reach private and public ones. The
// public table holds private services' routes too, denied: a request goes
// to the service whose host and path match best, and is refused when that
// service is private.
func newTable(services []*service, class config.Class) *table {
	t := &table{exact: map[string][]*route{}, wild: map[string][]*route{}}
	for _, s := range services {
		r := &route{svc: s, prefix: cleanPrefix(s.cfg.Path)}
		if class == config.Public && s.cfg.Expose != config.Public {
			r.denied = true
		} else {
			r.cm = s.metrics.forService(s.cfg.Name, class)
		}
		for _, h := range s.cfg.Hosts {
			if parent, ok := cutWildcard(h); ok {
				t.wild[parent] = append(t.wild[parent], r)
			} else {
				t.exact[h] = append(t.exact[h], r)
			}
		}
	}
	byLen := func(a, b *route) int { return len(b.prefix) - len(a.prefix) }
	for _, rs := range t.exact {
		slices.SortStableFunc(rs, byLen)
	}
	for _, rs := range t.wild {
		slices.SortStableFunc(rs, byLen)
	}
	return t
}

func cutWildcard(h string) (string, bool) {
	if len(h) > 2 && h[0] == '*' && h[1] == '.' {
		return h[2:], true
	}
	return "", false
}

// serves reports whether some request to host (normalized) is answered by
// a service of the table rather than refused: a host whose every route is
// denied (a private service's, in the public table) is served nothing.
// It errs toward true where a path could decide either way.
func (t *table) serves(host string) bool {
	catchAll := false // an exact route for "/" hides the wildcards
	for _, r := range t.exact[host] {
		if !r.denied {
			return true
		}
		catchAll = catchAll || r.prefix == ""
	}
	if catchAll {
		return false
	}
	if k := wildcardKey(host); k != "" {
		for _, r := range t.wild[k] {
			if !r.denied {
				return true
			}
		}
	}
	return false
}

// lookup finds the route for a normalized host and a request path: exact
// hosts first, then one-label wildcards; the longest path prefix wins.
// known reports whether the host has any route at all.
func (t *table) lookup(host, path string) (r *route, known bool) {
	if host == "" {
		return nil, false
	}
	if rs, ok := t.exact[host]; ok {
		known = true
		for _, r := range rs {
			if matchPath(r.prefix, path) {
				return r, true
			}
		}
	}
	if k := wildcardKey(host); k != "" {
		if rs, ok := t.wild[k]; ok {
			known = true
			for _, r := range rs {
				if matchPath(r.prefix, path) {
					return r, true
				}
			}
		}
	}
	return nil, known
}
