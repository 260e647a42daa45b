package relay

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/labgate/labgate/internal/listen"

	"github.com/labgate/labgate/internal/proxyproto"
	"github.com/labgate/labgate/internal/tlspeek"
)

type tcpListener struct {
	ln    *net.TCPListener
	route atomic.Pointer[routeConf]
}

func (r *Relay) listenTCP(rc *routeConf) (*tcpListener, error) {
	lc := listen.Config()
	lc.KeepAlive = -1
	ln, err := lc.Listen(context.Background(), "tcp", rc.Listen)
	if err != nil {
		return nil, err
	}
	listen.WarnAbsent(r.log, "tcp", rc.Listen)
	return &tcpListener{ln: ln.(*net.TCPListener)}, nil
}

func (r *Relay) serveTCP(l *tcpListener) {
	defer r.wg.Done()
	var backoff time.Duration
	for {
		c, err := l.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			r.log.Error("relay: accept", "route", l.route.Load().Name, "err", err)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		rc := l.route.Load()
		src := proxyproto.AddrPortOf(c.RemoteAddr())
		tc := r.conns.add(src.Addr(), rc, c)
		if tc == nil {
			c.Close()
			rc.m.refused.Inc()
			rc.m.err(ReasonSourceLimit)
			r.logFor(src.Addr(), "relay: too many connections from one address, refusing",
				"route", rc.Name, "client", src, "limit", rc.cfg.opts.MaxConnsPerSource)
			continue
		}
		r.wg.Add(1)
		go r.handleTCP(tc, src)
	}
}

// tcpConn is one relayed connection.
type tcpConn struct {
	rc      *routeConf
	src     netip.Addr
	key     netip.Addr // src's source for MaxConnsPerSource
	client  *net.TCPConn
	gw      atomic.Pointer[net.TCPConn]
	aborted atomic.Bool // closed on purpose (idle, shutdown): errors are not resets
	copier  sync.WaitGroup
}

// abort closes both sides; reason, if not empty, is counted.
func (c *tcpConn) abort(reason string) {
	if c.aborted.Swap(true) {
		return
	}
	if reason != "" {
		c.rc.m.err(reason)
	}
	c.client.Close()
	if gw := c.gw.Load(); gw != nil {
		gw.Close()
	}
}

// peekBufs hold ClientHellos being peeked: the PROXY header goes in front
// of the peeked bytes, in the same buffer, so both leave in one write.
var peekBufs = sync.Pool{New: func() any { return new(peekBuf) }}

const headerRoom = 1024 // > the largest header AppendV2 writes with our TLVs

type peekBuf struct {
	b       [headerRoom + tlspeek.MaxPeek]byte
	scratch [tlspeek.MaxPeek]byte
}

func (r *Relay) handleTCP(tc *tcpConn, src netip.AddrPort) {
	defer r.wg.Done()
	defer r.conns.remove(tc)
	rc, c := tc.rc, tc.client
	dst := proxyproto.AddrPortOf(c.LocalAddr())

	h := proxyproto.Header{Command: proxyproto.Proxy, Transport: proxyproto.TCP, Source: src, Destination: dst}
	var out []byte
	var small [64]byte
	var pb *peekBuf
	peeked := 0
	if rc.PeekTLS {
		pb = peekBufs.Get().(*peekBuf)
		defer peekBufs.Put(pb)
		n, hello := peekHello(c, pb, rc.cfg.opts.PeekTimeout)
		peeked = n
		if hello.ServerName != "" || hello.ALPN != nil {
			h.Authority = hello.ServerName
			if len(hello.ALPN) > 0 {
				h.ALPN = []byte(hello.ALPN[0])
			}
			r.log.Debug("relay: ClientHello", "route", rc.Name, "client", src, "sni", hello.ServerName, "alpn", hello.ALPN)
		}
		hb := h.AppendV2(small[:0])
		start := headerRoom - len(hb)
		copy(pb.b[start:], hb)
		out = pb.b[start : headerRoom+n]
	} else {
		out = h.AppendV2(small[:0])
	}

	gw, err := rc.dial()
	if err != nil {
		c.Close()
		reason := dialReason(err)
		rc.m.failed.Inc()
		rc.m.err(reason)
		r.logFor(src.Addr(), "relay: cannot reach the gateway", "route", rc.Name, "client", src,
			"target", rc.Target, "reason", reason, "err", err)
		return
	}
	tc.gw.Store(gw)
	if tc.aborted.Load() { // shut down while dialing
		gw.Close()
		return
	}
	if _, err := gw.Write(out); err != nil {
		c.Close()
		gw.Close()
		rc.m.failed.Inc()
		rc.m.err(ReasonHeader)
		r.logFor(src.Addr(), "relay: cannot send the PROXY header", "route", rc.Name, "client", src,
			"target", rc.Target, "err", err)
		return
	}
	if peeked > 0 {
		rc.m.toGateway.Add(float64(peeked))
	}
	rc.m.forwarded.Inc()
	rc.m.active.Inc()

	tc.copier.Add(1)
	go tc.toGateway()
	n, err := io.Copy(c, gw)
	rc.m.toClient.Add(float64(n))
	tc.ended(err, c)
	tc.copier.Wait()
	c.Close()
	gw.Close()
	rc.m.active.Dec()
}

// toGateway copies client to gateway: the second goroutine of a connection.
func (tc *tcpConn) toGateway() {
	defer tc.copier.Done()
	gw := tc.gw.Load()
	n, err := io.Copy(gw, tc.client)
	tc.rc.m.toGateway.Add(float64(n))
	tc.ended(err, gw)
}

// ended finishes one direction: on EOF it half-closes the receiving side so
// that the other direction goes on; on an error it aborts both.
func (tc *tcpConn) ended(err error, dst *net.TCPConn) {
	if err == nil {
		if dst.CloseWrite() == nil {
			return
		}
		// The receiver is gone: nothing more can be delivered either way.
	}
	if !tc.aborted.Load() {
		tc.abort(ReasonReset)
	}
}

// peekHello reads the start of a TLS connection into pb.b[headerRoom:] until
// it holds a complete ClientHello, the bytes are not TLS, the buffer is full
// or timeout passes. It returns how many bytes it read (all of which must be
// forwarded) and what it found.
func peekHello(c *net.TCPConn, pb *peekBuf, timeout time.Duration) (int, tlspeek.ClientHello) {
	buf := pb.b[headerRoom:]
	c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	n := 0
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		n += m
		msg, st := tlspeek.Scan(buf[:n], pb.scratch[:0])
		switch st {
		case tlspeek.Complete:
			ch, perr := tlspeek.ParseClientHello(msg)
			if perr != nil {
				return n, tlspeek.ClientHello{}
			}
			return n, ch
		case tlspeek.NotTLS:
			return n, tlspeek.ClientHello{}
		}
		if err != nil {
			// Timeout or EOF: forward what arrived. A read error shows
			// again on the next read, in the copy.
			return n, tlspeek.ClientHello{}
		}
	}
	return n, tlspeek.ClientHello{}
}

func dialReason(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReasonConnectRefused
	case errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, os.ErrDeadlineExceeded):
		return ReasonConnectTimeout
	}
	return ReasonConnect
}

func (rc *routeConf) dial() (*net.TCPConn, error) {
	if rc.target.IsValid() {
		return rc.cfg.dialer.DialTCP(context.Background(), "tcp", netip.AddrPort{}, rc.target)
	}
	c, err := rc.cfg.dialer.Dial("tcp", rc.Target)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// connTable tracks established TCP connections: per-source counts for
// MaxConnsPerSource, and the set the idle sweeper and the shutdown walk.
type connTable struct {
	mu        sync.Mutex
	perSource map[netip.Addr]int
	set       map[*tcpConn]struct{}
}

func (t *connTable) init() {
	t.perSource = make(map[netip.Addr]int)
	t.set = make(map[*tcpConn]struct{})
}

// add registers a connection from src, or returns nil if src's source (see
// sourceOf) is at its limit.
func (t *connTable) add(src netip.Addr, rc *routeConf, client *net.TCPConn) *tcpConn {
	key := sourceOf(src)
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.perSource[key]
	if n >= rc.cfg.opts.MaxConnsPerSource {
		return nil
	}
	t.perSource[key] = n + 1
	c := &tcpConn{rc: rc, src: src, key: key, client: client}
	t.set[c] = struct{}{}
	return c
}

func (t *connTable) remove(c *tcpConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.set, c)
	if n := t.perSource[c.key]; n <= 1 {
		delete(t.perSource, c.key)
	} else {
		t.perSource[c.key] = n - 1
	}
}

// sourceOf is what MaxConnsPerSource counts by: an IPv4 address, or the
// /64 of an IPv6 address. One IPv6 host usually holds a whole /64 (a VPS
// gets one, and so does a home line) and can connect from any address in
// it: counted per address, its limit would be 2^64 times too high.
func sourceOf(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.WithZone("").Prefix(64)
		return p.Addr()
	}
	return a
}

func (t *connTable) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.set)
}

func (t *connTable) snapshot(dst []*tcpConn) []*tcpConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.set {
		dst = append(dst, c)
	}
	return dst
}

// sweepIdle closes connections idle for their route's IdleTimeout until stop
// is closed.
func (r *Relay) sweepIdle(stop <-chan struct{}) {
	var conns []*tcpConn
	for {
		r.mu.Lock()
		every := min(r.cfg.opts.IdleTimeout/8, time.Minute)
		r.mu.Unlock()
		t := time.NewTimer(every)
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.C:
		}
		conns = r.conns.snapshot(conns[:0])
		for i, c := range conns {
			conns[i] = nil
			gw := c.gw.Load()
			if gw == nil || c.aborted.Load() {
				continue
			}
			limit := c.rc.cfg.opts.IdleTimeout
			a, ok1 := sinceLastReceive(c.client)
			b, ok2 := sinceLastReceive(gw)
			if ok1 && ok2 && a >= limit && b >= limit {
				r.logFor(c.src, "relay: closing an idle connection", "route", c.rc.Name,
					"client", c.client.RemoteAddr(), "idle", min(a, b).Round(time.Second))
				c.abort(ReasonIdle)
			}
		}
	}
}
