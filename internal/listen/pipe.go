package listen

import (
	"net"
	"sync"
)

// Pipe is a net.Listener fed by Deliver. It lets a generation run an
// http.Server (or any Serve(net.Listener) API) on connections accepted by a
// Listener that outlives it. Close it (or let http.Server.Shutdown close it)
// when the generation is retired.
type Pipe struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

// NewPipe returns a Pipe whose Addr is addr, usually the Listener's.
func NewPipe(addr net.Addr) *Pipe {
	return &Pipe{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// Deliver hands c to a pending or the next Accept. It returns false, without
// touching c, once the pipe is closed; the caller then closes c. It waits for
// Accept, which an http.Server calls again right after each connection.
func (p *Pipe) Deliver(c net.Conn) bool {
	select {
	case <-p.done:
		return false
	default:
	}
	select {
	case p.ch <- c:
		return true
	case <-p.done:
		return false
	}
}

// Accept waits for a delivered connection; after Close it returns
// net.ErrClosed.
func (p *Pipe) Accept() (net.Conn, error) {
	select {
	case c := <-p.ch:
		return c, nil
	case <-p.done:
		return nil, &net.OpError{Op: "accept", Net: "pipe", Addr: p.addr, Err: net.ErrClosed}
	}
}

// Close makes Accept and Deliver fail. Connections already accepted are
// untouched. It is safe to call more than once.
func (p *Pipe) Close() error {
	p.once.Do(func() { close(p.done) })
	return nil
}

// Addr returns the address given to NewPipe.
func (p *Pipe) Addr() net.Addr { return p.addr }

var _ net.Listener = (*Pipe)(nil)
