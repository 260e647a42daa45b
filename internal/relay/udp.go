package relay

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labgate/labgate/internal/listen"

	"github.com/labgate/labgate/internal/proxyproto"
)

// maxDatagram is the largest UDP payload.
const maxDatagram = 65535

// udpHeadroom is room before a datagram for its PROXY v2 header (52 bytes
// for UDP6 without TLVs).
const udpHeadroom = 64

type udpListener struct {
	ln    *net.UDPConn
	local netip.AddrPort
	route atomic.Pointer[routeConf]

	mu        sync.Mutex
	flows     map[netip.AddrPort]*flow
	perSource map[netip.Addr]int // flows by sourceOf(client), for MaxConnsPerSource
	closed    bool
	done      chan struct{}
}

// flow is one client address and port with its own socket to the gateway.
type flow struct {
	l      *udpListener
	rc     *routeConf
	client netip.AddrPort
	conn   *net.UDPConn
	hdr    []byte      // the PROXY v2 header of every datagram of this flow
	active atomic.Bool // a datagram passed since the last sweep
	idle   time.Time   // when the sweeper last saw it inactive; sweeper only
}

func (r *Relay) listenUDP(rc *routeConf) (*udpListener, error) {
	ln, err := listen.UDP(rc.Listen, r.log)
	if err != nil {
		return nil, err
	}
	return &udpListener{
		ln:        ln,
		local:     proxyproto.AddrPortOf(ln.LocalAddr()),
		flows:     make(map[netip.AddrPort]*flow),
		perSource: make(map[netip.Addr]int),
		done:      make(chan struct{}),
	}, nil
}

// close closes the listening socket and every flow.
func (l *udpListener) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	close(l.done)
	l.ln.Close()
	for k, f := range l.flows {
		f.conn.Close()
		f.rc.m.flows.Dec()
		delete(l.flows, k)
	}
	clear(l.perSource)
}

// forget uncounts f from its source. l.mu is held.
func (l *udpListener) forget(f *flow) {
	key := sourceOf(f.client.Addr())
	if n := l.perSource[key]; n <= 1 {
		delete(l.perSource, key)
	} else {
		l.perSource[key] = n - 1
	}
}

// serveUDP reads client datagrams and forwards each, behind its flow's
// header, to the gateway.
func (r *Relay) serveUDP(l *udpListener) {
	defer r.wg.Done()
	buf := make([]byte, udpHeadroom+maxDatagram)
	for {
		n, src, err := l.ln.ReadFromUDPAddrPort(buf[udpHeadroom:])
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ICMP errors reported on the socket
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		f := r.flowFor(l, src)
		if f == nil {
			continue
		}
		f.active.Store(true)
		start := udpHeadroom - len(f.hdr)
		copy(buf[start:], f.hdr)
		if _, err := f.conn.Write(buf[start : udpHeadroom+n]); err != nil {
			// ECONNREFUSED after an ICMP port unreachable from the gateway.
			f.rc.m.err(ReasonUDPWrite)
			r.logFor(src.Addr(), "relay: cannot send a datagram to the gateway", "route", f.rc.Name,
				"client", src, "target", f.rc.Target, "err", err)
			continue
		}
		f.rc.m.toGateway.Add(float64(n))
	}
}

// flowFor returns the flow of client src, creating it if the route allows.
func (r *Relay) flowFor(l *udpListener, src netip.AddrPort) *flow {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f := l.flows[src]; f != nil {
		return f
	}
	if l.closed {
		return nil
	}
	rc := l.route.Load()
	// One client, from as many ports as it likes, must not take the
	// flows of everyone else.
	key := sourceOf(src.Addr())
	if l.perSource[key] >= rc.cfg.opts.MaxConnsPerSource {
		rc.m.refused.Inc()
		rc.m.err(ReasonSourceLimit)
		r.logFor(src.Addr(), "relay: too many UDP flows from one address, dropping a datagram of a new flow",
			"route", rc.Name, "client", src, "limit", rc.cfg.opts.MaxConnsPerSource)
		return nil
	}
	if len(l.flows) >= rc.cfg.opts.UDPMaxFlows {
		rc.m.refused.Inc()
		rc.m.err(ReasonFlowLimit)
		r.logFor(src.Addr(), "relay: too many UDP flows, dropping a datagram of a new client",
			"route", rc.Name, "client", src, "limit", rc.cfg.opts.UDPMaxFlows)
		return nil
	}
	c, err := net.Dial("udp", rc.Target)
	if err != nil {
		rc.m.failed.Inc()
		rc.m.err(ReasonConnect)
		r.logFor(src.Addr(), "relay: cannot open a UDP flow to the gateway", "route", rc.Name,
			"client", src, "target", rc.Target, "err", err)
		return nil
	}
	h := proxyproto.Header{Command: proxyproto.Proxy, Transport: proxyproto.UDP, Source: src, Destination: l.local}
	f := &flow{l: l, rc: rc, client: src, conn: c.(*net.UDPConn), hdr: h.AppendV2(nil)}
	l.flows[src] = f
	l.perSource[key]++
	rc.m.forwarded.Inc()
	rc.m.flows.Inc()
	r.wg.Add(1)
	go r.flowReplies(f)
	return f
}

// replyBuf is the largest reply a flow passes on. Bigger replies are
// truncated by the kernel and dropped, and counted.
const replyBuf = 16 << 10

// flowReplies sends the gateway's replies of one flow back to its client
// until the flow's socket is closed.
func (r *Relay) flowReplies(f *flow) {
	defer r.wg.Done()
	buf := make([]byte, replyBuf)
	for {
		n, _, flags, _, err := f.conn.ReadMsgUDPAddrPort(buf, nil)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ECONNREFUSED from an earlier datagram: the flow goes on
		}
		if flags&msgTrunc != 0 {
			f.rc.m.err(ReasonUDPWrite)
			continue
		}
		f.active.Store(true)
		if _, err := f.l.ln.WriteToUDPAddrPort(buf[:n], f.client); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			f.rc.m.err(ReasonUDPWrite)
			continue
		}
		f.rc.m.toClient.Add(float64(n))
	}
}

// expireFlows ends flows without datagrams for UDPFlowTimeout, until the
// listener closes.
func (r *Relay) expireFlows(l *udpListener) {
	defer r.wg.Done()
	for {
		timeout := l.route.Load().cfg.opts.UDPFlowTimeout
		t := time.NewTimer(max(timeout/4, time.Millisecond))
		select {
		case <-l.done:
			t.Stop()
			return
		case now := <-t.C:
			l.mu.Lock()
			for k, f := range l.flows {
				if f.active.Swap(false) || f.idle.IsZero() {
					f.idle = now
					continue
				}
				if now.Sub(f.idle) >= f.rc.cfg.opts.UDPFlowTimeout {
					f.conn.Close()
					f.rc.m.flows.Dec()
					delete(l.flows, k)
					l.forget(f)
				}
			}
			l.mu.Unlock()
		}
	}
}
