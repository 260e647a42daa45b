// Package tlspeek reads the TLS ClientHello at the start of a connection
// without decrypting anything: the server name and ALPN protocols a client
// asked for, so that a connection can be routed before (or instead of) a TLS
// handshake.
package tlspeek

import (
	"net"
	"time"
)

// Peek reads from c, for at most timeout, until it holds a complete
// ClientHello (at most MaxPeek bytes of handshake records), and parses it.
// It always returns a connection that yields the bytes it read before the
// rest of c: a *Conn, whose Peeked and NetConn let a caller that forwards
// raw bytes write the peeked ones first and then copy from c itself (keeping
// splice). The error is non-nil, wrapping ErrNotHello, when the bytes are
// not a ClientHello, or is the read error (a timeout, EOF) when it ended
// early; the connection is still usable then, for a caller that wants to
// pass it on as is. The read deadline of c is cleared on return.
func Peek(c net.Conn, timeout time.Duration) (ClientHello, net.Conn, error) {
	buf := make([]byte, MaxPeek)
	c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	n := 0
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		n += m
		msg, st := Scan(buf[:n], nil)
		switch st {
		case Complete:
			ch, perr := ParseClientHello(msg)
			return ch, newConn(c, buf[:n]), perr
		case NotTLS:
			return ClientHello{}, newConn(c, buf[:n]), helloErr("not a TLS handshake")
		}
		if err != nil {
			return ClientHello{}, newConn(c, buf[:n]), err
		}
	}
	return ClientHello{}, newConn(c, buf[:n]), helloErr("too large")
}

// Conn is a net.Conn that yields some already read bytes before reading on
// from the connection they came from.
type Conn struct {
	net.Conn
	peeked []byte
	rest   []byte
}

func newConn(c net.Conn, peeked []byte) *Conn {
	return &Conn{Conn: c, peeked: peeked, rest: peeked}
}

// Read returns the peeked bytes first, then reads from the connection.
func (c *Conn) Read(p []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// Peeked returns all the bytes Peek read, whether or not Read has returned
// them yet.
func (c *Conn) Peeked() []byte { return c.peeked }

// NetConn returns the connection Peek read from.
func (c *Conn) NetConn() net.Conn { return c.Conn }
