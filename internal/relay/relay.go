// Package relay is the engine of `labgate relay`: a layer-4 relay that runs
// on a VPS and forwards public TCP and UDP ports over the VPN to the gateway,
// prefixing every TCP connection and every UDP datagram with a PROXY protocol
// v2 header so that the gateway sees the real client address.
//
// The relay never decrypts. On routes with PeekTLS it reads the TLS
// ClientHello (at most 16 KiB, for at most PeekTimeout) only to send its SNI
// and ALPN as PROXY v2 TLVs (AUTHORITY and ALPN) and to log; whatever it read
// is forwarded unchanged, TLS or not.
//
// TCP: each accepted connection costs two goroutines (the handler and one
// copier). Bytes move with io.Copy between two *net.TCPConn, which is
// splice(2) on Linux; when one side finishes sending, the relay half-closes
// the other (CloseWrite) and keeps the opposite direction open. Idle
// connections are found by a sweeper that reads the kernel's
// time-since-last-data of both sockets (TCP_INFO), so the data path sets no
// deadlines and keeps no counters. The connect time to the gateway is bounded
// with TCP_SYNCNT rather than a dial timer. TCP keep-alive is off on relay
// sockets: both peers have their own.
//
// UDP: one listening socket per route; every client address and port is a
// flow with its own connected socket to the gateway, so replies find their
// way back. Each datagram to the gateway carries its own PROXY v2 header in
// the same datagram; replies go back to the client from the listening socket.
//
// Reloads (Update) keep listeners whose protocol and listen address are
// unchanged, bind new ones and close removed ones; established connections
// are never cut by a reload, and new targets and limits apply to new
// connections only.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Route forwards one public port to the gateway.
type Route struct {
	// Name identifies the route in logs and metrics, e.g. "https", "http",
	// "mail/25". Names are unique within Options.
	Name string
	// Proto is "tcp" or "udp".
	Proto string
	// Listen is the host:port the relay binds on the VPS (port 0 picks one,
	// for tests; see Relay.Addr).
	Listen string
	// Target is the gateway's host:port over the VPN.
	Target string
	// PeekTLS makes the relay read the TLS ClientHello to send its SNI
	// (AUTHORITY) and first ALPN protocol as PROXY v2 TLVs and to log them.
	// Only for ports where the client speaks first (443); on a port where
	// the server speaks first every connection would wait PeekTimeout.
	PeekTLS bool
}

// Options configure a Relay. Zero values mean the defaults given per field.
type Options struct {
	Routes []Route
	// ConnectTimeout bounds connecting to the gateway (default 5s). It is
	// enforced by the kernel's SYN retransmission count (TCP_SYNCNT): the
	// attempt gives up after 3s, 7s, 15s, 31s… (1+2+4+… seconds), the
	// longest of those not above ConnectTimeout, and never before 3s.
	ConnectTimeout time.Duration
	// IdleTimeout closes a TCP connection that carried no data in either
	// direction for this long (default 1h). It is checked every
	// IdleTimeout/8 (at most every minute), so a connection may live up to
	// that much longer.
	IdleTimeout time.Duration
	// PeekTimeout is the longest a PeekTLS route waits for a complete
	// ClientHello (default 1s). Then the connection is forwarded with what
	// arrived and without TLVs: peeking never drops a connection.
	PeekTimeout time.Duration
	// MaxConnsPerSource limits concurrent TCP connections per client IPv4
	// address or IPv6 /64, over all routes (default 256). Further
	// connections are closed at once and counted. It bounds the UDP flows
	// of one such source on each route too (a client can send from any
	// number of ports): datagrams of further flows are dropped and counted.
	MaxConnsPerSource int
	// UDPFlowTimeout ends a UDP flow without datagrams in either direction
	// for this long (default 60s).
	UDPFlowTimeout time.Duration
	// UDPMaxFlows limits the UDP flows of one route (default 4096); datagrams
	// of new clients beyond it are dropped and counted.
	UDPMaxFlows int
	// GracePeriod is how long Run lets established TCP connections finish
	// after its context is done, before closing them (default 30s).
	GracePeriod time.Duration
	// ProbeInterval is the period of the gateway probes behind
	// labgate_relay_gateway_up (default 10s; negative: no probes).
	ProbeInterval time.Duration
	// ProbeTargets are the gateway addresses to probe with Probe. They must
	// answer HTTP (the gateway's public HTTP listener does). Nil means the
	// distinct Targets of all TCP routes: set it when some of them are not
	// HTTP (mail, MQTT), or they will show as down.
	ProbeTargets []string
	// Log receives refusals and errors, at most one line per client address
	// per minute, and gateway state changes (default: discard). Only the
	// Log given to New is used.
	Log *slog.Logger
	// Metrics receives the relay's series (default: unregistered). Only the
	// Metrics given to New is used; create it once per process.
	Metrics *Metrics
}

// Defaults for zero Options fields.
const (
	DefaultConnectTimeout    = 5 * time.Second
	DefaultIdleTimeout       = time.Hour
	DefaultPeekTimeout       = time.Second
	DefaultMaxConnsPerSource = 256
	DefaultUDPFlowTimeout    = 60 * time.Second
	DefaultUDPMaxFlows       = 4096
	DefaultGracePeriod       = 30 * time.Second
	DefaultProbeInterval     = 10 * time.Second
)

// config is one validated generation of Options with defaults applied.
type config struct {
	opts   Options
	routes []*routeConf
	dialer *net.Dialer
}

// routeConf is a route as its listener serves it; a reload swaps it.
type routeConf struct {
	Route
	cfg    *config
	m      *routeMetrics
	target netip.AddrPort // Target when it is an IP literal: dialed without parsing or resolving
}

// Relay forwards the routes of its Options. Create it with New, serve with
// Run, reconfigure with Update.
type Relay struct {
	log     *slog.Logger
	metrics *Metrics
	logs    logLimiter
	conns   connTable

	mu          sync.Mutex
	cfg         *config
	state       int // stateNew, stateRunning, stateDone
	tcp         map[listenerKey]*tcpListener
	udp         map[listenerKey]*udpListener
	stopProbes  context.CancelFunc
	probes      sync.WaitGroup
	probeTarget map[string]bool

	wg    sync.WaitGroup // accept loops, handlers, UDP loops and flows
	bound chan struct{}  // closed once Run has bound every route
}

const (
	stateNew = iota
	stateRunning
	stateDone
)

// listenerKey identifies a listener across reloads: Proto and Listen, and
// for port 0 (tests) also the route name, since every ":0" is its own port.
type listenerKey struct{ proto, addr, name string }

func keyOf(rt Route) listenerKey {
	k := listenerKey{proto: rt.Proto, addr: rt.Listen}
	if _, port, _ := net.SplitHostPort(rt.Listen); port == "0" {
		k.name = rt.Name
	}
	return k
}

// New validates opts and returns a Relay that has bound nothing yet.
func New(opts Options) (*Relay, error) {
	r := &Relay{
		log:     opts.Log,
		metrics: opts.Metrics,
		tcp:     make(map[listenerKey]*tcpListener),
		udp:     make(map[listenerKey]*udpListener),
		bound:   make(chan struct{}),
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.metrics == nil {
		r.metrics = NewMetrics(nil)
	}
	r.conns.init()
	r.logs.init()
	cfg, err := r.build(opts)
	if err != nil {
		return nil, err
	}
	r.cfg = cfg
	return r, nil
}

// build validates opts, applies defaults and resolves metrics.
func (r *Relay) build(opts Options) (*config, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for name, v := range map[string]time.Duration{
		"connect timeout": opts.ConnectTimeout, "idle timeout": opts.IdleTimeout,
		"peek timeout": opts.PeekTimeout, "UDP flow timeout": opts.UDPFlowTimeout, "grace period": opts.GracePeriod,
	} {
		if v < 0 {
			bad("relay: %s %v is negative", name, v)
		}
	}
	if opts.MaxConnsPerSource < 0 || opts.UDPMaxFlows < 0 {
		bad("relay: connection and flow limits must not be negative")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&opts.ConnectTimeout, DefaultConnectTimeout)
	def(&opts.IdleTimeout, DefaultIdleTimeout)
	def(&opts.PeekTimeout, DefaultPeekTimeout)
	def(&opts.UDPFlowTimeout, DefaultUDPFlowTimeout)
	def(&opts.GracePeriod, DefaultGracePeriod)
	def(&opts.ProbeInterval, DefaultProbeInterval)
	if opts.MaxConnsPerSource == 0 {
		opts.MaxConnsPerSource = DefaultMaxConnsPerSource
	}
	if opts.UDPMaxFlows == 0 {
		opts.UDPMaxFlows = DefaultUDPMaxFlows
	}
	cfg := &config{opts: opts}
	names := make(map[string]bool)
	listens := make(map[listenerKey]string)
	for i, rt := range opts.Routes {
		at := fmt.Sprintf("relay: routes[%d]", i)
		if rt.Name != "" {
			at += " (" + rt.Name + ")"
		}
		switch {
		case rt.Name == "":
			bad("%s: name is empty", at)
		case names[rt.Name]:
			bad("%s: name is used twice", at)
		}
		names[rt.Name] = true
		if rt.Proto != "tcp" && rt.Proto != "udp" {
			bad("%s: proto %q (want tcp or udp)", at, rt.Proto)
		}
		if rt.PeekTLS && rt.Proto != "tcp" {
			bad("%s: peek_tls needs proto tcp", at)
		}
		if err := checkHostPort(rt.Listen, true); err != nil {
			bad("%s: listen %q: %v", at, rt.Listen, err)
		}
		if err := checkHostPort(rt.Target, false); err != nil {
			bad("%s: target %q: %v", at, rt.Target, err)
		}
		k := keyOf(rt)
		if other, dup := listens[k]; dup {
			bad("%s: %s %s is also the listen address of route %q", at, rt.Proto, rt.Listen, other)
		}
		listens[k] = rt.Name
		rc := &routeConf{Route: rt, cfg: cfg, m: r.metrics.route(rt.Name)}
		if ap, err := netip.ParseAddrPort(rt.Target); err == nil {
			rc.target = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
		cfg.routes = append(cfg.routes, rc)
	}
	for _, t := range opts.ProbeTargets {
		if err := checkHostPort(t, false); err != nil {
			bad("relay: probe target %q: %v", t, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	cfg.dialer = newDialer(opts.ConnectTimeout)
	return cfg, nil
}

func checkHostPort(s string, zeroPortOK bool) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("want host:port")
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	if p == 0 && !zeroPortOK {
		return errors.New("port 0")
	}
	return nil
}

// Run binds every route and relays until ctx is done. Then it stops
// accepting, closes UDP flows, lets established TCP connections finish for
// GracePeriod and closes the rest. It returns an error only if a route
// cannot be bound, after closing what it bound; a Relay runs once.
func (r *Relay) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.state != stateNew {
		r.mu.Unlock()
		return errors.New("relay: Run called twice")
	}
	if err := r.apply(r.cfg); err != nil {
		r.mu.Unlock()
		return err
	}
	r.state = stateRunning
	r.startProbes(r.cfg)
	grace := r.cfg.opts.GracePeriod
	r.mu.Unlock()
	close(r.bound)

	sweepDone := make(chan struct{})
	stopSweep := make(chan struct{})
	go func() {
		defer close(sweepDone)
		r.sweepIdle(stopSweep)
	}()

	<-ctx.Done()

	r.mu.Lock()
	r.state = stateDone
	for k, l := range r.tcp {
		l.ln.Close()
		delete(r.tcp, k)
	}
	for k, l := range r.udp {
		l.close()
		delete(r.udp, k)
	}
	r.stopProbes()
	r.mu.Unlock()
	r.probes.Wait()

	deadline := time.Now().Add(grace)
	for r.conns.count() > 0 && time.Now().Before(deadline) {
		time.Sleep(min(50*time.Millisecond, time.Until(deadline)))
	}
	for _, c := range r.conns.snapshot(nil) {
		c.abort("")
	}
	close(stopSweep)
	<-sweepDone
	r.wg.Wait()
	return nil
}

// Update reconfigures the relay. Listeners whose Proto and Listen are
// unchanged stay bound; new ones are bound and removed ones closed (UDP flows
// of a removed route end with it). Established TCP connections are never
// closed by Update; new Targets and limits apply to new connections and
// flows. If opts are invalid or a new listener cannot be bound, nothing
// changes and the error says why. Log and Metrics in opts are ignored.
func (r *Relay) Update(opts Options) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	cfg, err := r.build(opts)
	if err != nil {
		return err
	}
	switch r.state {
	case stateDone:
		return errors.New("relay: Update after Run returned")
	case stateRunning:
		if err := r.apply(cfg); err != nil {
			return err
		}
		r.stopProbes()
		r.startProbes(cfg)
	}
	r.cfg = cfg
	return nil
}

// Bound is closed once Run has bound every route: from then on the relay
// forwards. If Run fails to bind, it returns its error and Bound stays open.
func (r *Relay) Bound() <-chan struct{} { return r.bound }

// Addr returns the bound address of the named route's listener, or nil if
// the route is unknown or not bound (before Run, after it returned).
func (r *Relay) Addr(routeName string) net.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.tcp {
		if l.route.Load().Name == routeName {
			return l.ln.Addr()
		}
	}
	for _, l := range r.udp {
		if l.route.Load().Name == routeName {
			return l.ln.LocalAddr()
		}
	}
	return nil
}

// apply binds what cfg adds, swaps the routes of kept listeners and closes
// the removed ones. On a bind error it closes what it bound and changes
// nothing. r.mu is held.
func (r *Relay) apply(cfg *config) error {
	newTCP := make(map[listenerKey]*tcpListener)
	newUDP := make(map[listenerKey]*udpListener)
	var err error
	for _, rc := range cfg.routes {
		k := keyOf(rc.Route)
		switch rc.Proto {
		case "tcp":
			if r.tcp[k] == nil {
				var l *tcpListener
				if l, err = r.listenTCP(rc); err == nil {
					newTCP[k] = l
				}
			}
		case "udp":
			if r.udp[k] == nil {
				var l *udpListener
				if l, err = r.listenUDP(rc); err == nil {
					newUDP[k] = l
				}
			}
		}
		if err != nil {
			err = fmt.Errorf("relay: route %s: %w", rc.Name, err)
			break
		}
	}
	if err != nil {
		for _, l := range newTCP {
			l.ln.Close()
		}
		for _, l := range newUDP {
			l.ln.Close()
		}
		return err
	}
	keepTCP := make(map[listenerKey]bool)
	keepUDP := make(map[listenerKey]bool)
	for _, rc := range cfg.routes {
		k := keyOf(rc.Route)
		if rc.Proto == "tcp" {
			keepTCP[k] = true
			if l := r.tcp[k]; l != nil {
				l.route.Store(rc)
				continue
			}
			l := newTCP[k]
			l.route.Store(rc)
			r.tcp[k] = l
			r.wg.Add(1)
			go r.serveTCP(l)
		} else {
			keepUDP[k] = true
			if l := r.udp[k]; l != nil {
				l.route.Store(rc)
				continue
			}
			l := newUDP[k]
			l.route.Store(rc)
			r.udp[k] = l
			r.wg.Add(2)
			go r.serveUDP(l)
			go r.expireFlows(l)
		}
	}
	for k, l := range r.tcp {
		if !keepTCP[k] {
			l.ln.Close()
			delete(r.tcp, k)
		}
	}
	for k, l := range r.udp {
		if !keepUDP[k] {
			l.close()
			delete(r.udp, k)
		}
	}
	return nil
}

// logLimiter allows one log line per client address per minute.
type logLimiter struct {
	mu    sync.Mutex
	last  map[netip.Addr]time.Time
	now   func() time.Time
	quiet atomic.Uint64 // lines suppressed
}

const (
	logEvery    = time.Minute
	maxLogPeers = 4096
)

func (l *logLimiter) init() {
	l.last = make(map[netip.Addr]time.Time)
	l.now = time.Now
}

func (l *logLimiter) allow(a netip.Addr) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.last[a]; ok && now.Sub(t) < logEvery {
		l.quiet.Add(1)
		return false
	}
	if len(l.last) >= maxLogPeers {
		for p, t := range l.last {
			if now.Sub(t) >= logEvery {
				delete(l.last, p)
			}
		}
		if len(l.last) >= maxLogPeers {
			l.quiet.Add(1)
			return false
		}
	}
	l.last[a] = now
	return true
}

// logFor logs at warn level for a client address, rate-limited.
func (r *Relay) logFor(client netip.Addr, msg string, args ...any) {
	if !r.logs.allow(client) {
		return
	}
	r.log.Warn(msg, args...)
}
