package proxyproto

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Conn wraps an accepted connection whose peer must send a PROXY header
// (v1 or v2) before anything else.
//
// The header is read lazily, once, by the first call to Read, WriteTo,
// RemoteAddr, LocalAddr or Header, so an accept loop that wraps connections
// never blocks on a slow peer. Writes do not wait for the header.
//
// If the header is missing, invalid or incomplete when the timeout expires,
// the underlying connection is closed, onError is called once and Read and
// WriteTo return the error; RemoteAddr and LocalAddr then return the socket's
// addresses.
//
// Conn keeps io.Copy on the splice(2) path: WriteTo hands out the few bytes
// read past the header and then passes the rest through to the underlying
// connection, and ReadFrom passes through as well.
type Conn struct {
	conn    net.Conn
	timeout time.Duration
	onError func(peer net.Addr, err error)

	once          sync.Once
	hdr           *Header
	err           error
	remote, local net.Addr

	mu       sync.Mutex
	reading  bool      // the header is being read under our deadline
	readDL   time.Time // the read deadline the user asked for
	rest     []byte    // bytes read past the header, not yet handed out
	restDone atomic.Bool
	hr       hdrReader
}

// NewConn wraps c. timeout bounds the time for the whole header from its
// first read (0 or less: no bound, which only a trusted peer deserves).
// onError, if not nil, is called with the socket's peer address when the
// header cannot be read; it runs on the goroutine that triggered the read.
func NewConn(c net.Conn, timeout time.Duration, onError func(peer net.Addr, err error)) *Conn {
	return &Conn{conn: c, timeout: timeout, onError: onError}
}

// Header returns the PROXY header, reading it first if needed.
func (c *Conn) Header() (*Header, error) {
	c.init()
	return c.hdr, c.err
}

// NetConn returns the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.conn }

func (c *Conn) init() { c.once.Do(c.readHeader) }

func (c *Conn) readHeader() {
	c.mu.Lock()
	c.reading = true
	dl := c.readDL
	c.mu.Unlock()
	if c.timeout > 0 {
		if t := time.Now().Add(c.timeout); dl.IsZero() || t.Before(dl) {
			dl = t
		}
	}
	err := c.conn.SetReadDeadline(dl)
	var h *Header
	if err == nil {
		c.hr.src = c.conn
		c.hr.ahead = len(c.hr.inline)
		h, err = readHeader(&c.hr)
	}

	c.mu.Lock()
	c.reading = false
	if err == nil {
		err = c.conn.SetReadDeadline(c.readDL)
	}
	if err == nil {
		c.rest = c.hr.buf[c.hr.r:c.hr.w]
	}
	c.restDone.Store(len(c.rest) == 0)
	c.hr.src = nil
	c.mu.Unlock()

	if err != nil {
		c.err = err
		_ = c.conn.Close()
		if c.onError != nil {
			c.onError(c.conn.RemoteAddr(), err)
		}
		return
	}
	c.hdr = h
	if h.Source.IsValid() {
		c.remote = addrOf(h.Source, h.Transport)
		c.local = addrOf(h.Destination, h.Transport)
	}
}

func addrOf(ap netip.AddrPort, t Transport) net.Addr {
	if t == UDP {
		return net.UDPAddrFromAddrPort(ap)
	}
	return net.TCPAddrFromAddrPort(ap)
}

// Read reads from the connection after the header.
func (c *Conn) Read(p []byte) (int, error) {
	c.init()
	if c.err != nil {
		return 0, c.err
	}
	if !c.restDone.Load() {
		c.mu.Lock()
		if len(c.rest) > 0 {
			n := copy(p, c.rest)
			c.rest = c.rest[n:]
			if len(c.rest) == 0 {
				c.rest = nil
				c.restDone.Store(true)
			}
			c.mu.Unlock()
			return n, nil
		}
		c.mu.Unlock()
	}
	return c.conn.Read(p)
}

// WriteTo writes the data after the header to w until EOF. After the bytes
// buffered while reading the header, it passes through to the underlying
// connection, so that a *net.TCPConn to *net.TCPConn copy uses splice(2).
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	c.init()
	if c.err != nil {
		return 0, c.err
	}
	var n int64
	c.mu.Lock()
	rest := c.rest
	c.rest = nil
	c.restDone.Store(true)
	c.mu.Unlock()
	if len(rest) > 0 {
		m, err := w.Write(rest)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	var m int64
	var err error
	if wt, ok := c.conn.(io.WriterTo); ok {
		m, err = wt.WriteTo(w)
	} else {
		m, err = io.Copy(w, struct{ io.Reader }{c.conn})
	}
	return n + m, err
}

// ReadFrom writes everything from r to the connection, passing through to
// the underlying connection's ReadFrom (splice(2) for TCP) when it has one.
// It does not wait for the header.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.conn}, r)
}

// Write writes to the underlying connection. It does not wait for the header.
func (c *Conn) Write(p []byte) (int, error) { return c.conn.Write(p) }

// Close closes the underlying connection.
func (c *Conn) Close() error { return c.conn.Close() }

// CloseWrite shuts down the writing side of the underlying connection, if it
// supports that (like *net.TCPConn).
func (c *Conn) CloseWrite() error {
	if cw, ok := c.conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// RemoteAddr returns the header's source address for a PROXY header that
// carries addresses, and the socket's peer otherwise (LOCAL, UNSPEC, UNKNOWN,
// or a failed header). It reads the header first if needed.
func (c *Conn) RemoteAddr() net.Addr {
	c.init()
	if c.remote != nil {
		return c.remote
	}
	return c.conn.RemoteAddr()
}

// LocalAddr returns the header's destination address for a PROXY header that
// carries addresses, and the socket's local address otherwise. It reads the
// header first if needed.
func (c *Conn) LocalAddr() net.Addr {
	c.init()
	if c.local != nil {
		return c.local
	}
	return c.conn.LocalAddr()
}

// SetDeadline sets both deadlines. While the header is being read, the read
// deadline is remembered and applied once the header is in.
func (c *Conn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readDL = t
	if c.reading {
		return c.conn.SetWriteDeadline(t)
	}
	return c.conn.SetDeadline(t)
}

// SetReadDeadline sets the read deadline. While the header is being read, it
// is remembered and applied once the header is in.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readDL = t
	if c.reading {
		return nil
	}
	return c.conn.SetReadDeadline(t)
}

// SetWriteDeadline sets the write deadline of the underlying connection.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

var (
	_ net.Conn      = (*Conn)(nil)
	_ io.WriterTo   = (*Conn)(nil)
	_ io.ReaderFrom = (*Conn)(nil)
)
