package l4

// UDP services.
//
// A UDP socket outlives config generations (a reload must not rebind it:
// clients would see their flows break), so sockets live in a UDPSockets set
// that the routers of successive generations share. Each socket has one
// reader goroutine and one sweeper, and a table of flows. A flow is one
// (class, socket-level peer, real client) with its own connected socket to
// the backend and one goroutine reading the backend's replies.
//
// New flows are made by the newest router still open on the socket (its
// routes, trusted relays, allow list and timeouts); a flow keeps the route
// of the router that made it until it idles out, so a reload changes the
// backend of new flows only, like TCP connections.
//
// Datagrams on a public socket come from the relay, one per client
// datagram, each starting with a PROXY v2 header whose Source is the
// client (FACTS: "UDP: one header per datagram, in the same datagram").
// Replies go back to the relay's per-client socket without a header: the
// relay knows which client that socket is for. On a private socket the
// datagram's source is the client.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labgate/labgate/internal/listen"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/proxyproto"
)

// UDP defaults.
const (
	// DefaultUDPFlowTimeout matches the relay's default udp_flow_timeout.
	DefaultUDPFlowTimeout = 60 * time.Second
	// DefaultMaxUDPFlows bounds the flows of one socket; a datagram that
	// would open one more is dropped (reason flow_limit).
	DefaultMaxUDPFlows = 4096
)

const (
	maxDatagram = 65535 // the largest UDP payload
	// udpHeadroom is room before a payload for the PROXY v2 header to the
	// backend (52 bytes for UDP6 without TLVs), so it is written in place.
	udpHeadroom = 64
	logEvery    = time.Minute // at most one drop log line per source
	maxLogPeers = 1024        // sources remembered for that, per socket
)

// Reasons a datagram is dropped: the reason label of
// labgate_l4_udp_dropped_total.
const (
	DropUntrusted     = "untrusted"      // public socket, the source is not a trusted relay
	DropNotAllowed    = "not_allowed"    // private socket, the source is outside gateway.private.allow
	DropNoHeader      = "no_header"      // from a trusted relay, without a PROXY header
	DropInvalidHeader = "invalid_header" // a malformed header, or not PROXY over UDP
	DropProbe         = "probe"          // a LOCAL header: the relay's health probe
	DropNoRoute       = "no_route"       // no udp service on this port for the class
	DropClosed        = "closed"         // no generation takes new flows on this socket
	DropFlowLimit     = "flow_limit"     // the socket has MaxUDPFlows flows
	DropBackendError  = "backend_error"  // resolving or writing to the backend failed
	DropReplyError    = "reply_error"    // sending a reply to the client (or relay) failed
)

var udpDropReasons = []string{DropUntrusted, DropNotAllowed, DropNoHeader, DropInvalidHeader, DropProbe,
	DropNoRoute, DropClosed, DropFlowLimit, DropBackendError, DropReplyError}

// replyBufs holds the buffers flows read their backend's replies into,
// reused from one flow to the next.
var replyBufs = sync.Pool{New: func() any { b := make([]byte, maxDatagram); return &b }}

// UDPSockets is the set of bound UDP sockets that the routers of successive
// generations share, by configured address. A socket is bound by the first
// router that serves its address and closed when no router holds it: the
// routers serving it, and closed ones whose flows on it have not ended.
// The daemon creates one and hands it from each generation's router to the
// next (Router.UDPSockets).
type UDPSockets struct {
	wg sync.WaitGroup // every socket's reader and sweeper, every flow's goroutine

	mu    sync.Mutex
	socks map[string]*udpSocket
	open  map[*Router]bool // routers that called ServeUDP and are not closed
}

// NewUDPSockets returns an empty set.
func NewUDPSockets() *UDPSockets {
	return &UDPSockets{socks: map[string]*udpSocket{}, open: map[*Router]bool{}}
}

// Addr returns the bound address of the socket for a configured address,
// or nil.
func (u *UDPSockets) Addr(configured string) net.Addr {
	u.mu.Lock()
	defer u.mu.Unlock()
	if s := u.socks[configured]; s != nil {
		return s.conn.LocalAddr()
	}
	return nil
}

// acquire returns the socket for addr, binding it if needed, with one more
// reference, and makes b its binding for new flows.
func (u *UDPSockets) acquire(addr string, b *udpBinding) (*udpSocket, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if s := u.socks[addr]; s != nil {
		s.refs++
		s.attach(b)
		return s, nil
	}
	c, err := listen.UDP(addr, b.r.log)
	if err != nil {
		return nil, err
	}
	s := &udpSocket{
		set:    u,
		addr:   addr,
		conn:   c,
		local:  proxyproto.AddrPortOf(c.LocalAddr()),
		refs:   1,
		done:   make(chan struct{}),
		flows:  map[flowKey]*udpFlow{},
		logged: map[netip.Addr]time.Time{},
	}
	s.attach(b)
	u.socks[addr] = s
	u.wg.Add(2)
	go s.read()
	go s.sweep()
	return s, nil
}

// release drops one reference to s, closing it with the last.
func (u *UDPSockets) release(s *udpSocket) {
	u.mu.Lock()
	s.refs--
	last := s.refs == 0
	if last && u.socks[s.addr] == s {
		delete(u.socks, s.addr)
	}
	u.mu.Unlock()
	if last {
		s.close()
	}
}

// closeAll cuts every flow, closes every socket and waits for all their
// goroutines.
func (u *UDPSockets) closeAll() {
	u.mu.Lock()
	var socks []*udpSocket
	for a, s := range u.socks {
		socks = append(socks, s)
		delete(u.socks, a)
	}
	u.mu.Unlock()
	for _, s := range socks {
		s.close()
	}
	u.wg.Wait()
}

// udpSocket is one bound UDP socket and its flows.
type udpSocket struct {
	set   *UDPSockets
	addr  string // as configured
	conn  *net.UDPConn
	local netip.AddrPort
	refs  int // under set.mu
	done  chan struct{}

	// cur makes new flows: the binding of the newest open router, or of
	// the last router that closed (which then refuses new flows but still
	// classifies datagrams for the flows it left).
	cur atomic.Pointer[udpBinding]

	mu       sync.Mutex
	bindings []*udpBinding // of the open routers, oldest first
	flows    map[flowKey]*udpFlow
	closed   bool

	logged map[netip.Addr]time.Time // reader goroutine only
}

// udpBinding is what one router serves on one socket.
type udpBinding struct {
	r         *Router
	port      int  // the route port (Listener.Port)
	pub, priv bool // the socket is a public / a private listener of r
}

// flowKey identifies a flow on its socket: the class, the socket-level peer
// (the relay's per-client socket, or a private client) and the real client.
type flowKey struct {
	class        config.Class
	peer, client netip.AddrPort
}

// udpFlow is one client's flow with its own connected socket to the
// backend.
type udpFlow struct {
	s       *udpSocket
	key     flowKey
	r       *Router // the router that made it
	rt      *udpRoute
	conn    *net.UDPConn
	hdr     []byte // the PROXY v2 header of each datagram to the backend, or nil
	timeout time.Duration
	start   time.Time
	active  atomic.Bool // a datagram passed since the sweeper last looked
	in, out atomic.Int64

	// Under s.mu.
	idle   time.Time // when the sweeper first saw it inactive
	reason string    // why it ended; "" while it runs
}

type udpRoute struct {
	service string
	port    int
	backend string
	proxy   string // "" or "v2"
	m       *udpRouteMetrics
}

// udpState is the UDP part of a Router.
type udpState struct {
	udpRoutes   map[routeKey]*udpRoute
	trusted     []netip.Prefix // gateway.public.trusted_relays
	allow       []netip.Prefix // gateway.private.allow; empty allows all
	flowTimeout time.Duration
	maxFlows    int
	udpWG       sync.WaitGroup // flow goroutines

	// Under Router.mu.
	udp         *UDPSockets
	socks       []*udpSocket
	udpFlows    int
	udpReleased bool
}

func (r *Router) initUDP(cfg *config.Config, opts Options) {
	r.flowTimeout = opts.UDPFlowTimeout
	if r.flowTimeout <= 0 && cfg.Relay != nil {
		r.flowTimeout = cfg.Relay.UDPFlowTimeout
	}
	if r.flowTimeout <= 0 {
		r.flowTimeout = DefaultUDPFlowTimeout
	}
	r.maxFlows = opts.MaxUDPFlows
	if r.maxFlows <= 0 {
		r.maxFlows = DefaultMaxUDPFlows
	}
	if p := cfg.Gateway.Public; p != nil {
		r.trusted = unmapPrefixes(p.TrustedRelays)
	}
	if p := cfg.Gateway.Private; p != nil {
		r.allow = unmapPrefixes(p.Allow)
	}
	r.udpRoutes = map[routeKey]*udpRoute{}
	for _, s := range cfg.Services {
		for _, ur := range s.UDP {
			rt := &udpRoute{service: s.Name, port: ur.Port, backend: ur.Backend, proxy: ur.ProxyProtocol,
				m: opts.Metrics.forUDPRoute(s.Name, ur.Port)}
			r.udpRoutes[routeKey{config.Private, ur.Port}] = rt
			if s.Expose == config.Public {
				r.udpRoutes[routeKey{config.Public, ur.Port}] = rt
			}
		}
	}
}

// UDPSockets returns the set r serves its UDP listeners from (nil before
// ServeUDP), for the next generation's ServeUDP.
func (r *Router) UDPSockets() *UDPSockets {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.udp
}

// ServeUDP serves the "udp" entries of ls (other entries are ignored) on
// sockets from set: one socket per address, reused if set already has it
// (from an earlier generation), bound otherwise. Call it once, before
// Close, even with no udp listeners: r remembers set for UDPSockets.
//
// From then on r makes the new flows of these sockets (the previous
// router's flows go on with their routes until they idle out). Where a
// public and a private listener share an address, a datagram from a
// trusted relay is public (and must start with a PROXY v2 header), any
// other private, as for TCP. It returns the addresses it could not bind;
// the others are served. Close lets go of them.
func (r *Router) ServeUDP(set *UDPSockets, ls []Listener) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return errors.New("l4: ServeUDP on a closed router")
	}
	r.udp = set
	r.mu.Unlock()

	byAddr := map[string]*udpBinding{}
	var order []string
	for _, l := range ls {
		if l.Proto != "udp" {
			continue
		}
		b := byAddr[l.Addr]
		if b == nil {
			b = &udpBinding{r: r, port: l.Port}
			byAddr[l.Addr] = b
			order = append(order, l.Addr)
		}
		if l.Class == config.Public {
			b.pub = true
		} else {
			b.priv = true
		}
	}
	var errs []error
	for _, addr := range order {
		s, err := set.acquire(addr, byAddr[addr])
		if err != nil {
			errs = append(errs, fmt.Errorf("listening on %s (udp service port): %w", addr, err))
			continue
		}
		r.mu.Lock()
		r.socks = append(r.socks, s)
		r.mu.Unlock()
	}
	set.mu.Lock()
	set.open[r] = true
	set.mu.Unlock()
	return errors.Join(errs...)
}

// closeUDP runs when r closes: its sockets stop using it for new flows,
// and it lets go of them if it has no flow left.
func (r *Router) closeUDP() {
	r.mu.Lock()
	set, socks := r.udp, r.socks
	r.mu.Unlock()
	if set == nil {
		return
	}
	set.mu.Lock()
	delete(set.open, r)
	set.mu.Unlock()
	for _, s := range socks {
		s.detach(r)
	}
	r.releaseUDPIfIdle()
}

// releaseUDPIfIdle lets go of r's sockets once r is closed without flows.
func (r *Router) releaseUDPIfIdle() {
	r.mu.Lock()
	if !r.closed || r.udpFlows > 0 || r.udpReleased || r.udp == nil {
		r.mu.Unlock()
		return
	}
	r.udpReleased = true
	set, socks := r.udp, r.socks
	r.mu.Unlock()
	for _, s := range socks {
		set.release(s)
	}
}

// shutdownUDP cuts r's flows and waits for them; when no router of the set
// is open any more, it closes the whole set.
func (r *Router) shutdownUDP() {
	r.mu.Lock()
	set, socks := r.udp, r.socks
	r.mu.Unlock()
	if set == nil {
		return
	}
	for _, s := range socks {
		s.endFlows(func(f *udpFlow) bool { return f.r == r }, ResultShutdown)
	}
	r.udpWG.Wait()
	set.mu.Lock()
	last := len(set.open) == 0
	set.mu.Unlock()
	if last {
		set.closeAll()
	}
}

// addFlow counts a new flow of r, unless r is closed.
func (r *Router) addFlow() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.udpFlows++
	r.udpWG.Add(1)
	return true
}

// flowDone uncounts a flow of r (its goroutine has ended, or it never ran).
func (r *Router) flowDone() {
	r.mu.Lock()
	r.udpFlows--
	r.mu.Unlock()
	r.releaseUDPIfIdle()
	r.udpWG.Done()
}

// unmapPrefixes is listen.UnmapPrefix of each of ps, as listen.Policy
// reads them for TCP: datagram sources are unmapped, and would match
// neither form otherwise.
func unmapPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		out = append(out, listen.UnmapPrefix(p))
	}
	return out
}

func (r *Router) trustedRelay(a netip.Addr) bool {
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (r *Router) allowedPrivate(a netip.Addr) bool {
	if len(r.allow) == 0 {
		return true
	}
	for _, p := range r.allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func (s *udpSocket) attach(b *udpBinding) {
	s.mu.Lock()
	s.bindings = append(s.bindings, b)
	s.cur.Store(b)
	s.mu.Unlock()
}

// detach stops r making new flows on s: the newest other open router does.
func (s *udpSocket) detach(r *Router) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, b := range s.bindings {
		if b.r == r {
			s.bindings = append(s.bindings[:i], s.bindings[i+1:]...)
			break
		}
	}
	if n := len(s.bindings); n > 0 {
		s.cur.Store(s.bindings[n-1])
	}
}

// close closes the socket and ends its flows. It does not wait for the
// goroutines (UDPSockets.closeAll does).
func (s *udpSocket) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	s.conn.Close()
	s.endFlows(func(*udpFlow) bool { return true }, ResultShutdown)
}

// endFlows ends the flows that match with reason.
func (s *udpSocket) endFlows(match func(*udpFlow) bool, reason string) {
	s.mu.Lock()
	var end []*udpFlow
	for _, f := range s.flows {
		if match(f) {
			end = append(end, f)
		}
	}
	s.mu.Unlock()
	for _, f := range end {
		s.endFlow(f, reason)
	}
}

// endFlow removes f and closes its backend socket; its goroutine then
// ends, logs and uncounts it.
func (s *udpSocket) endFlow(f *udpFlow, reason string) {
	s.mu.Lock()
	if f.reason != "" {
		s.mu.Unlock()
		return
	}
	f.reason = reason
	if s.flows[f.key] == f {
		delete(s.flows, f.key)
	}
	s.mu.Unlock()
	f.conn.Close()
}

// read receives the datagrams of s until it is closed.
func (s *udpSocket) read() {
	defer s.set.wg.Done()
	buf := make([]byte, udpHeadroom+maxDatagram)
	for {
		n, src, err := s.conn.ReadFromUDPAddrPort(buf[udpHeadroom:])
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. an ICMP error reported on the socket
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		s.datagram(buf, udpHeadroom, udpHeadroom+n, src)
	}
}

// datagram forwards buf[lo:hi], received from peer. buf[:lo] is free for a
// header.
func (s *udpSocket) datagram(buf []byte, lo, hi int, peer netip.AddrPort) {
	b := s.cur.Load()
	if b == nil {
		return
	}
	r := b.r
	key := flowKey{peer: peer}
	dst := s.local
	payload := buf[lo:hi]
	switch {
	case b.pub && r.trustedRelay(peer.Addr()):
		h, p, err := proxyproto.ParseV2Datagram(payload)
		if err != nil {
			reason := DropInvalidHeader
			if errors.Is(err, proxyproto.ErrNoHeader) {
				reason = DropNoHeader
			}
			s.dropLog(r, peer, reason, "l4 udp datagram dropped: a trusted relay must start every datagram with a PROXY v2 header", "err", err)
			return
		}
		if h.Command == proxyproto.Local {
			r.metrics.drop(DropProbe) // the relay's probe: nothing to forward
			return
		}
		if h.Transport != proxyproto.UDP || !h.Source.IsValid() {
			s.dropLog(r, peer, DropInvalidHeader, "l4 udp datagram dropped: the PROXY header is not for UDP",
				"transport", h.Transport.String())
			return
		}
		key.class = config.Public
		key.client = netip.AddrPortFrom(h.Source.Addr().Unmap(), h.Source.Port())
		dst = h.Destination
		payload = p
	case b.priv && r.allowedPrivate(peer.Addr()):
		key.class = config.Private
		key.client = peer
	case b.priv:
		s.dropLog(r, peer, DropNotAllowed, "l4 udp datagram dropped: the source is not in gateway.private.allow")
		return
	default:
		s.dropLog(r, peer, DropUntrusted, "l4 udp datagram dropped: the source is not a trusted relay (gateway.public.trusted_relays)")
		return
	}

	s.mu.Lock()
	f := s.flows[key]
	n := len(s.flows)
	s.mu.Unlock()
	if f == nil {
		if f = s.newFlow(b, key, dst, n); f == nil {
			return
		}
	}
	f.active.Store(true)
	start := hi - len(payload)
	if f.hdr != nil {
		start -= len(f.hdr)
		copy(buf[start:], f.hdr)
	}
	if _, err := f.conn.Write(buf[start:hi]); err != nil {
		if errors.Is(err, net.ErrClosed) {
			f.r.metrics.drop(DropClosed) // the flow ended just now
		} else {
			// ECONNREFUSED after an ICMP port unreachable from the backend.
			f.r.metrics.drop(DropBackendError)
		}
		return
	}
	f.in.Add(1)
	f.rt.m.datagramIn()
}

// newFlow opens a flow for key through binding b, or counts and logs why
// not. n is the number of flows on s.
func (s *udpSocket) newFlow(b *udpBinding, key flowKey, dst netip.AddrPort, n int) *udpFlow {
	r := b.r
	rt := r.udpRoutes[routeKey{key.class, b.port}]
	if rt == nil {
		s.dropLog(r, key.peer, DropNoRoute, "l4 udp datagram dropped: no udp service on this port for the socket's class",
			"class", key.class.String(), "port", b.port)
		return nil
	}
	if n >= r.maxFlows {
		s.dropLog(r, key.peer, DropFlowLimit, "l4 udp datagram dropped: too many flows on this socket",
			"service", rt.service, "limit", r.maxFlows)
		return nil
	}
	if !r.addFlow() {
		r.metrics.drop(DropClosed)
		return nil
	}
	c, err := r.dialer.Dial("udp", rt.backend)
	if err != nil {
		r.flowDone()
		s.dropLog(r, key.peer, DropBackendError, "l4 udp backend unreachable", "service", rt.service,
			"backend", rt.backend, "err", err)
		return nil
	}
	f := &udpFlow{s: s, key: key, r: r, rt: rt, conn: c.(*net.UDPConn), timeout: r.flowTimeout, start: time.Now()}
	if rt.proxy == "v2" {
		h := proxyproto.Header{Command: proxyproto.Proxy, Transport: proxyproto.UDP, Source: key.client, Destination: dst}
		f.hdr = h.AppendV2(make([]byte, 0, 52))
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.Close()
		r.flowDone()
		r.metrics.drop(DropClosed)
		return nil
	}
	s.flows[key] = f
	s.mu.Unlock()
	rt.m.flow(1)
	s.set.wg.Add(1) // the reader goroutine is counted: never from zero
	go f.replies()
	return f
}

// replies sends the backend's replies of f to its socket-level peer, from
// the listening socket and without a header, until f ends.
func (f *udpFlow) replies() {
	bp := replyBufs.Get().(*[]byte)
	buf := *bp
	for {
		n, err := f.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				break
			}
			continue // ECONNREFUSED from an earlier datagram: the flow goes on
		}
		f.active.Store(true)
		if _, err := f.s.conn.WriteToUDPAddrPort(buf[:n], f.key.peer); err != nil {
			if errors.Is(err, net.ErrClosed) {
				break
			}
			f.r.metrics.drop(DropReplyError)
			continue
		}
		f.out.Add(1)
		f.rt.m.datagramOut()
	}
	replyBufs.Put(bp)
	f.s.mu.Lock()
	reason := f.reason
	f.s.mu.Unlock()
	f.rt.m.flow(-1)
	attrs := []any{"service", f.rt.service, "port", f.rt.port, "class", f.key.class.String(), "client", f.key.client.String(),
		"backend", f.rt.backend, "result", reason, "datagrams_in", f.in.Load(), "datagrams_out", f.out.Load(),
		"duration", time.Since(f.start).Round(time.Millisecond)}
	if f.key.peer != f.key.client {
		attrs = append(attrs, "via", f.key.peer.String())
	}
	f.r.log.Info("l4 udp flow", attrs...)
	f.r.flowDone()
	f.s.set.wg.Done()
}

// sweep ends flows that passed no datagram for their timeout, until s is
// closed.
func (s *udpSocket) sweep() {
	defer s.set.wg.Done()
	for {
		tick := DefaultUDPFlowTimeout
		if b := s.cur.Load(); b != nil {
			tick = b.r.flowTimeout
		}
		t := time.NewTimer(max(tick/4, time.Millisecond))
		var now time.Time
		select {
		case <-s.done:
			t.Stop()
			return
		case now = <-t.C:
		}
		var idle []*udpFlow
		s.mu.Lock()
		for _, f := range s.flows {
			if f.active.Swap(false) || f.idle.IsZero() {
				f.idle = now
				continue
			}
			if now.Sub(f.idle) >= f.timeout {
				idle = append(idle, f)
			}
		}
		s.mu.Unlock()
		for _, f := range idle {
			s.endFlow(f, ResultIdleTimeout)
		}
	}
}

// dropLog counts a dropped datagram and logs it, at most once per source
// address per minute. Reader goroutine only.
func (s *udpSocket) dropLog(r *Router, peer netip.AddrPort, reason, msg string, attrs ...any) {
	r.metrics.drop(reason)
	now := time.Now()
	a := peer.Addr()
	if last, ok := s.logged[a]; ok && now.Sub(last) < logEvery {
		return
	}
	if len(s.logged) >= maxLogPeers {
		for k, t := range s.logged {
			if now.Sub(t) >= logEvery {
				delete(s.logged, k)
			}
		}
		if len(s.logged) >= maxLogPeers {
			return
		}
	}
	s.logged[a] = now
	r.log.Info(msg, append([]any{"reason", reason, "listener", s.addr, "peer", peer.String()}, attrs...)...)
}
