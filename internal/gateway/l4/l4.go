// Package l4 is the layer-4 side of one config generation: the `tcp` ports of
// services, each forwarded to one backend, optionally behind a PROXY header
// (v1 or v2) that tells the backend who the client is, and the `udp` ports
// (udp.go: one flow per client, PROXY v2 per datagram).
//
// The class of a connection (public or private) is the class of the listener
// it arrived on, never anything the client says. A public listener reaches
// only public services; a private listener reaches public and private ones.
// Public listeners are reached by trusted relays only, which must send a
// PROXY header: the daemon's listen.Policy enforces that before Handle sees
// the connection, and the connection's RemoteAddr is then the real client.
//
// Bytes are spliced: Handle copies with io.Copy between the accepted
// connection (a *net.TCPConn or a *proxyproto.Conn around one) and the
// backend's *net.TCPConn, with nothing in between, so that Linux moves them
// with splice(2). The idle timeout therefore cannot watch the copy; it asks
// the kernel instead (TCP_INFO's time since the last data sent or received
// on either socket).
package l4

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/proxyproto"
)

// Listener names one layer-4 listener. Its class decides whether a PROXY
// header is required (public: from trusted relays, checked by the daemon's
// listen.Policy before Handle) and which services it may reach.
type Listener struct {
	Class config.Class
	Proto string // "tcp" or "udp"
	Addr  string // host:port to bind
	Port  int
}

// Listeners returns the TCP and UDP listeners cfg needs, in config order
// without duplicates (per service its tcp ports, then its udp ports, with
// the same host rules for both): for every tcp or udp route of a public service one on each public
// listener host (the host part of gateway.public.https and .http, since the
// relay forwards public port P to that host at P) and one on each private
// listener host; for a private service one on each private listener host.
//
// When a public and a private listener host are the same (as in a gateway
// with one VPN address), a public service's port yields two entries with the
// same Addr, one per class. Bind that address once and choose the class per
// connection by its source: from gateway.public.trusted_relays it is public
// (PROXY required), from anywhere else private (gateway.private.allow, no
// PROXY). That is the socket's source, not a header; the relay cannot be
// impersonated on the VPN. UDP sockets do the same per datagram (see
// Router.ServeUDP).
func Listeners(cfg *config.Config) []Listener {
	pub, priv := listenHosts(cfg)
	var out []Listener
	seen := map[Listener]bool{}
	add := func(class config.Class, proto string, hosts []string, port int) {
		for _, h := range hosts {
			l := Listener{Class: class, Proto: proto, Addr: net.JoinHostPort(h, strconv.Itoa(port)), Port: port}
			if !seen[l] {
				seen[l] = true
				out = append(out, l)
			}
		}
	}
	for _, s := range cfg.Services {
		for _, set := range []struct {
			proto  string
			routes []config.L4Route
		}{{"tcp", s.TCP}, {"udp", s.UDP}} {
			for _, r := range set.routes {
				if s.Expose == config.Public {
					add(config.Public, set.proto, pub, r.Port)
				}
				add(config.Private, set.proto, priv, r.Port)
			}
		}
	}
	return out
}

// listenHosts returns the distinct host parts of the public and of the
// private HTTP(S) listener addresses, in config order.
func listenHosts(cfg *config.Config) (pub, priv []string) {
	hosts := func(lists ...[]string) []string {
		var out []string
		seen := map[string]bool{}
		for _, l := range lists {
			for _, a := range l {
				h, _, err := net.SplitHostPort(a)
				if err == nil && !seen[h] {
					seen[h] = true
					out = append(out, h)
				}
			}
		}
		return out
	}
	if p := cfg.Gateway.Public; p != nil {
		pub = hosts(p.HTTPS, p.HTTP)
	}
	if p := cfg.Gateway.Private; p != nil {
		priv = hosts(p.HTTPS, p.HTTP)
	}
	return pub, priv
}

// Defaults for Options left zero.
const (
	// DefaultIdleTimeout matches the relay's default idle_timeout.
	DefaultIdleTimeout = time.Hour
	// DefaultConnectTimeout applies when neither Options nor
	// gateway.limits.backend_connect_timeout sets one.
	DefaultConnectTimeout = 5 * time.Second
)

// Options are what a generation's router needs besides the config.
type Options struct {
	// Log receives one line per connection with the real client address,
	// and failures. nil: no logs.
	Log *slog.Logger
	// Metrics outlive generations; nil: no metrics.
	Metrics *Metrics
	// ConnectTimeout bounds dialing a backend; 0: the config's
	// gateway.limits.backend_connect_timeout.
	ConnectTimeout time.Duration
	// IdleTimeout closes a connection after this long without a byte in
	// either direction on either side; 0: DefaultIdleTimeout, negative:
	// never. Enforced on Linux, where the kernel reports the time since the
	// last data (splice leaves nothing else to watch); elsewhere not at all.
	IdleTimeout time.Duration
	// UDPFlowTimeout forgets a UDP flow (and closes its socket to the
	// backend) after this long without a datagram either way; 0: the
	// config's relay.udp_flow_timeout when the file has a relay section,
	// else DefaultUDPFlowTimeout.
	UDPFlowTimeout time.Duration
	// MaxUDPFlows bounds the flows of one UDP socket; 0: DefaultMaxUDPFlows.
	MaxUDPFlows int
}

// Router holds the tcp routes of one config generation and the connections
// it serves.
type Router struct {
	log     *slog.Logger
	metrics *Metrics
	routes  map[routeKey]*route
	dialer  net.Dialer
	idle    time.Duration

	ctx    context.Context // canceled by Shutdown when it cuts connections
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	flows  map[*flow]struct{}
	wg     sync.WaitGroup

	// passthrough per class: exact hosts and "*.parent" wildcards. The
	// public map holds private services too, which it refuses (see
	// passthroughFor); hasPublicPassthrough says whether any is public.
	passthrough          [2]map[string]*config.Service
	hasPublicPassthrough bool

	udpState
}

type routeKey struct {
	class config.Class
	port  int
}

type route struct {
	service string
	port    int
	backend string
	proxy   string // "", "v1", "v2"
	m       *routeMetrics
}

// New builds the routes of cfg's tcp ports. It refuses what Check refuses
// and starts nothing.
func New(cfg *config.Config, opts Options) (*Router, error) {
	if err := Check(cfg); err != nil {
		return nil, err
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	connect := opts.ConnectTimeout
	if connect <= 0 {
		connect = cfg.Gateway.Limits.BackendConnectTimeout
	}
	if connect <= 0 {
		connect = DefaultConnectTimeout
	}
	idle := opts.IdleTimeout
	if idle == 0 {
		idle = DefaultIdleTimeout
	}
	r := &Router{
		log:     opts.Log,
		metrics: opts.Metrics,
		routes:  map[routeKey]*route{},
		dialer:  net.Dialer{Timeout: connect},
		idle:    idle,
		flows:   map[*flow]struct{}{},
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.initUDP(cfg, opts)
	for _, s := range cfg.Services {
		if s.Passthrough != nil {
			if s.Expose == config.Public {
				r.hasPublicPassthrough = true
			}
			for _, class := range []config.Class{config.Private, config.Public} {
				if r.passthrough[class] == nil {
					r.passthrough[class] = map[string]*config.Service{}
				}
				for _, h := range s.Hosts {
					r.passthrough[class][h] = s
				}
			}
		}
		for _, tr := range s.TCP {
			rt := &route{service: s.Name, port: tr.Port, backend: tr.Backend, proxy: tr.ProxyProtocol,
				m: opts.Metrics.forRoute(s.Name, tr.Port)}
			r.routes[routeKey{config.Private, tr.Port}] = rt
			if s.Expose == config.Public {
				r.routes[routeKey{config.Public, tr.Port}] = rt
			}
		}
	}
	return r, nil
}

// Results of a connection, the result label of labgate_l4_connections_total.
const (
	ResultOK          = "ok"           // both sides closed
	ResultIdleTimeout = "idle_timeout" // closed after IdleTimeout without a byte
	ResultError       = "error"        // a reset or another error on either side
	ResultShutdown    = "shutdown"     // cut by Shutdown
	ResultNoRoute     = "no_route"     // nothing on this port for the listener's class
	ResultRefused     = "refused"      // the router was closed (an old generation)
	ResultClientError = "client_error" // the client's PROXY header was missing or invalid
	ResultBackendDown = "backend_down" // dialing the backend (or writing the PROXY header to it) failed
)

// Handle serves one admitted connection that arrived on l, and closes it.
// It finds the route for l's class and port (a public listener reaches
// public services only), waits for the client's PROXY header if c carries
// one, dials the backend, writes a PROXY header to it when the route asks
// for one (source c.RemoteAddr(), destination c.LocalAddr()), then copies
// both ways until both sides have closed, passing each half-close on, or
// until IdleTimeout passes without a byte. It blocks until then: the daemon
// calls it in its own goroutine.
func (r *Router) Handle(l Listener, c net.Conn) {
	var rt *route
	if l.Proto == "tcp" {
		rt = r.routes[routeKey{l.Class, l.Port}]
	}
	if rt == nil {
		c.Close()
		r.log.Info("l4 connection refused: no service on this port for the listener",
			"class", l.Class.String(), "listener", l.Addr, "port", l.Port, "peer", socketPeer(c))
		r.metrics.count("", l.Port, ResultNoRoute)
		return
	}
	r.serve(l, rt, c, nil)
}

// HasPassthrough reports whether a TLS passthrough service is reachable from
// class: only then do the HTTPS listeners of that class need to read the
// ClientHello before the TLS handshake.
func (r *Router) HasPassthrough(class config.Class) bool {
	if class == config.Public {
		return r.hasPublicPassthrough
	}
	return len(r.passthrough[class]) > 0
}

// passthroughFor returns the passthrough service of class whose hosts match
// serverName (lower case): exactly, else by a one-label wildcard. On a
// public listener the best match must be public: a private service's name
// is not forwarded to a public wildcard's backend either.
func (r *Router) passthroughFor(class config.Class, serverName string) *config.Service {
	m := r.passthrough[class]
	if m == nil || serverName == "" {
		return nil
	}
	s, ok := m[serverName]
	if !ok {
		if _, parent, found := strings.Cut(serverName, "."); found && parent != "" {
			s = m["*."+parent]
		}
	}
	if s != nil && class == config.Public && s.Expose != config.Public {
		return nil
	}
	return s
}

// HandleTLS serves a connection that arrived on the HTTPS listener l when
// serverName, the SNI of its ClientHello, is a host of a TLS passthrough
// service reachable from l's class. peeked are the bytes already read from
// c (the ClientHello): they go to the backend first, after the PROXY header
// the service may ask for, then the rest of c is copied as Handle copies
// (with the same metrics and logs, port being l's). c must be the
// connection the bytes were read from (not a replaying wrapper), so that
// the copy splices. It blocks until the connection ends and reports true;
// with no such service it returns false at once without touching c.
func (r *Router) HandleTLS(l Listener, c net.Conn, serverName string, peeked []byte) bool {
	s := r.passthroughFor(l.Class, serverName)
	if s == nil {
		return false
	}
	rt := &route{service: s.Name, port: l.Port, backend: s.Passthrough.Backend, proxy: s.Passthrough.ProxyProtocol,
		m: r.metrics.forRoute(s.Name, l.Port)}
	r.serve(l, rt, c, peeked)
	return true
}

// serve forwards c on rt, after peeked when the client's first bytes were
// already read.
func (r *Router) serve(l Listener, rt *route, c net.Conn, peeked []byte) {
	pc, _ := c.(*proxyproto.Conn)
	if l.Class == config.Public && pc == nil {
		// A wiring mistake: the socket's peer would pass for the client.
		c.Close()
		r.log.Error("l4 connection refused: a public listener must require a PROXY header (listen.Policy.RequireProxy)",
			"service", rt.service, "listener", l.Addr, "port", l.Port, "peer", socketPeer(c))
		rt.m.count(ResultClientError)
		return
	}
	f := &flow{client: c}
	if !r.track(f) {
		c.Close()
		r.log.Debug("l4 connection refused: the router is closed", "service", rt.service, "port", rt.port, "peer", socketPeer(c))
		rt.m.count(ResultRefused)
		return
	}
	defer r.untrack(f)

	// With a PROXY header, this waits for it (bounded by the listener's
	// header timeout); a missing or invalid one was logged by the policy.
	var cmd = proxyproto.Proxy
	if pc != nil {
		h, err := pc.Header()
		if err != nil {
			c.Close()
			r.log.Debug("l4 connection refused: PROXY header", "service", rt.service, "port", rt.port, "peer", socketPeer(c), "err", err)
			rt.m.count(f.result(ResultClientError))
			return
		}
		cmd = h.Command
	}
	client, local := c.RemoteAddr(), c.LocalAddr()
	log := r.log.With("service", rt.service, "port", rt.port, "class", l.Class.String(), "client", client.String())
	if peer := socketPeer(c); peer != client.String() {
		log = log.With("via", peer)
	}

	start := time.Now()
	bc, err := r.dialer.DialContext(r.ctx, "tcp", rt.backend)
	if err == nil && (rt.proxy != "" || len(peeked) > 0) {
		var first []byte
		if rt.proxy != "" {
			first = proxyHeader(rt.proxy, cmd, client, local)
		}
		// One write: the header and the client's first bytes.
		_, err = bc.Write(append(first, peeked...))
		if err != nil {
			bc.Close()
		}
	}
	if err != nil {
		c.Close()
		if res := f.result(ResultBackendDown); res != ResultBackendDown {
			rt.m.count(res)
			return
		}
		log.Warn("l4 backend unreachable", "backend", rt.backend, "err", err)
		rt.m.count(ResultBackendDown)
		return
	}
	if !f.setBackend(bc) {
		// Shutdown cut the flow while we were dialing.
		rt.m.count(ResultShutdown)
		return
	}

	rt.m.active(1)
	rt.m.addIn(int64(len(peeked)))
	in, out, result, cause := r.splice(f, rt.m)
	in += int64(len(peeked))
	attrs := []any{"backend", rt.backend, "result", result, "bytes_in", in, "bytes_out", out,
		"duration", time.Since(start).Round(time.Millisecond)}
	if cause != nil {
		attrs = append(attrs, "err", cause)
	}
	log.Info("l4 connection", attrs...)
	rt.m.active(-1)
	rt.m.count(result)
}

// Close makes Handle refuse new connections and r's UDP sockets refuse new
// flows (those go to the newest router still open on the same socket).
// Connections and UDP flows being served keep running until they end or
// idle out: a reload does not cut them. Shutdown ends them. Once r has no
// UDP flow left it lets go of its UDP sockets; a socket no router holds is
// closed.
func (r *Router) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.mu.Unlock()
	r.closeUDP()
}

// Shutdown closes r, cuts its UDP flows at once (UDP has nothing to wait
// for) and, when no router sharing its UDP sockets is open any more, every
// flow and socket of the set (those of earlier generations too). It then
// waits for its TCP connections to end until ctx is done, then cuts the
// rest and returns ctx's error. The daemon calls it on the router of the
// last generation when it exits.
func (r *Router) Shutdown(ctx context.Context) error {
	r.Close()
	r.shutdownUDP()
	done := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	r.cancel()
	r.mu.Lock()
	for f := range r.flows {
		f.cut()
	}
	r.mu.Unlock()
	<-done
	return ctx.Err()
}

// Active returns the number of connections r is serving.
func (r *Router) Active() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.flows)
}

func (r *Router) track(f *flow) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.flows[f] = struct{}{}
	r.wg.Add(1)
	return true
}

func (r *Router) untrack(f *flow) {
	r.mu.Lock()
	delete(r.flows, f)
	r.mu.Unlock()
	r.wg.Done()
}

// flow is one connection being served: the client side and, once dialed,
// the backend side.
type flow struct {
	client net.Conn

	mu      sync.Mutex
	backend net.Conn
	reason  string // why the flow was cut, "" while it was not
}

// setBackend records bc, or closes it and reports false if the flow was cut.
func (f *flow) setBackend(bc net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reason != "" {
		bc.Close()
		return false
	}
	f.backend = bc
	return true
}

// cut closes both sides because of Shutdown.
func (f *flow) cut() { f.abort(ResultShutdown) }

// abort closes both sides, remembering the first reason.
func (f *flow) abort(reason string) {
	f.mu.Lock()
	if f.reason == "" {
		f.reason = reason
	}
	bc := f.backend
	f.mu.Unlock()
	f.client.Close()
	if bc != nil {
		bc.Close()
	}
}

// result returns why the flow was cut, or def if it was not.
func (f *flow) result(def string) string {
	if r := f.cutReason(); r != "" {
		return r
	}
	return def
}

func (f *flow) cutReason() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reason
}

// splice copies both ways until both directions are done. A clean end of
// one direction (EOF) is passed on as a half-close; an error in either
// closes both sides. It returns the bytes from the client (in) and to it
// (out), the result and the first error, and closes both connections.
func (r *Router) splice(f *flow, m *routeMetrics) (in, out int64, result string, cause error) {
	c, b := f.client, f.backend
	var stop func()
	if r.idle > 0 {
		stop = watchIdle(r.idle, c, b, func() { f.abort(ResultIdleTimeout) })
	}
	type half struct {
		n   int64
		err error
	}
	up := make(chan half, 1)
	go func() {
		// c is a *net.TCPConn or a *proxyproto.Conn: io.Copy uses its
		// WriteTo, which reaches the backend's ReadFrom and splice(2).
		n, err := io.Copy(b, c)
		m.addIn(n)
		if err == nil {
			err = closeWrite(b)
		}
		if err != nil {
			f.abort(ResultError)
		}
		up <- half{n, err}
	}()
	// The backend's WriteTo reaches c's ReadFrom, which passes through to
	// the client's *net.TCPConn: splice(2) again.
	out, errOut := io.Copy(c, b)
	m.addOut(out)
	if errOut == nil {
		errOut = closeWrite(c)
	}
	if errOut != nil {
		f.abort(ResultError)
	}
	u := <-up
	if stop != nil {
		stop()
	}
	c.Close()
	b.Close()

	result = f.cutReason()
	switch result {
	case "":
		result = ResultOK
	case ResultError:
		// The first error is the cause; the other side then fails on a
		// closed connection.
		for _, err := range []error{u.err, errOut} {
			if err != nil && !errors.Is(err, net.ErrClosed) {
				cause = err
				break
			}
		}
		if cause == nil {
			cause = errors.Join(u.err, errOut)
		}
	}
	return u.n, out, result, cause
}

// closeWrite half-closes conn, or closes it if it cannot half-close.
func closeWrite(conn net.Conn) error {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); !errors.Is(err, errors.ErrUnsupported) {
			return err
		}
	}
	return conn.Close()
}

// socketPeer returns the address of the socket's peer (the relay for a
// connection with a PROXY header) without waiting for a header.
func socketPeer(c net.Conn) string {
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = nc.NetConn()
	}
	if a := c.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}
