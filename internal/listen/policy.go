package listen

import (
	"errors"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/labgate/labgate/internal/proxyproto"
)

// Reasons a Policy refuses a connection, as counted by Refused and passed to
// OnRefuse. They are meant as a metric label.
const (
	// ReasonNotAllowed: the socket's source is outside Allow.
	ReasonNotAllowed = "not_allowed"
	// ReasonNoHeader: the peer sent data that is not a PROXY header, or
	// closed the connection without sending anything.
	ReasonNoHeader = "no_header"
	// ReasonInvalidHeader: the PROXY header is malformed.
	ReasonInvalidHeader = "invalid_header"
	// ReasonTimeout: the PROXY header was not complete within HeaderTimeout.
	ReasonTimeout = "timeout"
	// ReasonReadError: reading the PROXY header failed otherwise (a reset).
	ReasonReadError = "read_error"
)

// DefaultHeaderTimeout is the PROXY header timeout when Policy leaves it 0.
const DefaultHeaderTimeout = 5 * time.Second

const (
	logEvery    = time.Minute // at most one refusal log line per peer
	maxLogPeers = 1024        // peers remembered for that
)

// Policy decides, per accepted connection, whether it is admitted, and wraps
// it. Set the fields before the first Admit and do not change them after;
// Admit is safe for concurrent use. A Policy must not be copied after use.
type Policy struct {
	// Allow lists the socket sources that may connect; empty allows all.
	// With RequireProxy these are the trusted relays: keep it tight, since
	// whoever may connect can claim any client address.
	Allow []netip.Prefix
	// RequireProxy makes every peer send a PROXY header (v1 or v2) before
	// anything else. A connection without one is refused, never passed on
	// as if it came from the relay.
	RequireProxy bool
	// HeaderTimeout bounds the time for the whole PROXY header
	// (DefaultHeaderTimeout if 0).
	HeaderTimeout time.Duration
	// Log receives refusals, at most one line per peer address per minute.
	Log *slog.Logger
	// OnRefuse, if not nil, is called for every refused connection with one
	// of the Reason constants, e.g. to count
	// labgate_listener_refused_total{listener,reason} in a counter that
	// outlives this Policy. It must not block.
	OnRefuse func(reason string)

	initOnce sync.Once
	allow    []netip.Prefix
	onErr    func(peer net.Addr, err error)
	now      func() time.Time // for tests

	mu      sync.Mutex
	refused map[string]uint64
	peers   map[netip.Addr]*peerLog
}

type peerLog struct {
	last       time.Time
	suppressed int
}

func (p *Policy) init() {
	p.initOnce.Do(func() {
		for _, pfx := range p.Allow {
			p.allow = append(p.allow, UnmapPrefix(pfx))
		}
		p.onErr = p.headerError
		if p.now == nil {
			p.now = time.Now
		}
		p.refused = make(map[string]uint64)
		p.peers = make(map[netip.Addr]*peerLog)
	})
}

// Admit returns the connection to use, or nil after closing c when its
// source is not allowed. With RequireProxy the result is a
// *proxyproto.Conn: its header is read on the connection's own goroutine at
// first use, and a missing or invalid header closes it and is counted then.
// Admit never blocks.
func (p *Policy) Admit(c net.Conn) net.Conn {
	p.init()
	if len(p.allow) > 0 {
		peer := proxyproto.AddrPortOf(c.RemoteAddr())
		if !p.allowed(peer.Addr()) {
			c.Close()
			p.refuse(peer.Addr(), ReasonNotAllowed, nil)
			return nil
		}
	}
	if !p.RequireProxy {
		return c
	}
	timeout := p.HeaderTimeout
	if timeout <= 0 {
		timeout = DefaultHeaderTimeout
	}
	return proxyproto.NewConn(c, timeout, p.onErr)
}

// Allowed reports whether a connection from addr passes Allow.
func (p *Policy) Allowed(addr netip.Addr) bool {
	p.init()
	return len(p.allow) == 0 || p.allowed(addr)
}

func (p *Policy) allowed(a netip.Addr) bool {
	a = a.Unmap()
	for _, pfx := range p.allow {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

func (p *Policy) headerError(peer net.Addr, err error) {
	var reason string
	switch {
	case errors.Is(err, net.ErrClosed):
		return // closed on our side, e.g. by a shutdown
	case errors.Is(err, os.ErrDeadlineExceeded):
		reason = ReasonTimeout
	case errors.Is(err, proxyproto.ErrInvalid):
		reason = ReasonInvalidHeader
	case errors.Is(err, proxyproto.ErrNoHeader):
		reason = ReasonNoHeader
	case errors.Is(err, io.EOF):
		reason = ReasonNoHeader
	default:
		reason = ReasonReadError
	}
	p.refuse(proxyproto.AddrPortOf(peer).Addr(), reason, err)
}

// Refused returns how many connections were refused, by reason.
func (p *Policy) Refused() map[string]uint64 {
	p.init()
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.refused)
}

func (p *Policy) refuse(peer netip.Addr, reason string, err error) {
	if p.OnRefuse != nil {
		p.OnRefuse(reason)
	}
	peer = peer.Unmap()
	now := p.now()
	p.mu.Lock()
	p.refused[reason]++
	pl := p.peers[peer]
	if pl == nil {
		if len(p.peers) >= maxLogPeers {
			for a, e := range p.peers {
				if now.Sub(e.last) >= logEvery {
					delete(p.peers, a)
				}
			}
		}
		if len(p.peers) >= maxLogPeers {
			// Too many noisy peers at once: count, but stay quiet.
			p.mu.Unlock()
			return
		}
		pl = &peerLog{last: now.Add(-logEvery)}
		p.peers[peer] = pl
	}
	if now.Sub(pl.last) < logEvery {
		pl.suppressed++
		p.mu.Unlock()
		return
	}
	suppressed := pl.suppressed
	pl.last, pl.suppressed = now, 0
	p.mu.Unlock()

	if p.Log == nil {
		return
	}
	attrs := []any{"peer", peer.String(), "reason", reason}
	if err != nil {
		attrs = append(attrs, "err", err.Error())
	}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	p.Log.Warn("connection refused", attrs...)
}

// UnmapPrefix is p as the sources it should match are compared with it:
// an IPv4-mapped prefix (::ffff:10.0.0.0/104) is the IPv4 one it means
// (10.0.0.0/8), since peers and datagram sources are unmapped; masked.
func UnmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked()
}
