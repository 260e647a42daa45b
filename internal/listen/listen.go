// Package listen owns labgate's bound TCP listeners so that they outlive
// config generations.
//
// A reload builds a new generation and swaps it in; listeners must not be
// rebound for that (a rebind refuses connections for a moment and can fail).
// A Registry keeps one Listener per configured address. Each Listener runs
// its accept loop from the moment it is bound and hands every accepted
// connection to its current handler, which a generation replaces atomically
// with SetHandler. Connections accepted under an old handler stay with it.
//
// Policy admits or refuses each accepted connection (source ranges, a
// required PROXY header), and Pipe turns a stream of delivered connections
// back into a net.Listener so that one http.Server per generation can Serve
// it while the real socket stays bound.
//
// A typical handler, set by each generation:
//
//	pipe := listen.NewPipe(l.Addr())
//	go srv.Serve(pipe)
//	l.SetHandler(func(c net.Conn) {
//		if c = policy.Admit(c); c != nil && !pipe.Deliver(c) {
//			c.Close()
//		}
//	})
package listen

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Registry owns bound TCP listeners keyed by the address string from the
// config. It is safe for concurrent use.
type Registry struct {
	log *slog.Logger

	mu     sync.Mutex
	ls     map[string]*Listener
	closed bool
}

// NewRegistry returns an empty registry that logs accept errors to log.
func NewRegistry(log *slog.Logger) *Registry {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registry{log: log, ls: make(map[string]*Listener)}
}

// Listen returns the listener for addr, binding it if the registry has none
// under that exact string. The accept loop starts at once; until a handler is
// set, accepted connections are closed immediately.
func (r *Registry) Listen(addr string) (*Listener, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, fmt.Errorf("listen %s: %w", addr, net.ErrClosed)
	}
	if l, ok := r.ls[addr]; ok {
		return l, nil
	}
	ln, err := TCP(addr, r.log)
	if err != nil {
		return nil, err
	}
	l := &Listener{
		key:  addr,
		ln:   ln,
		log:  r.log.With("listener", addr, "addr", ln.Addr().String()),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	r.ls[addr] = l
	go l.serve()
	return l, nil
}

// Retain closes every listener whose address is not in keep and waits for
// their accept loops to end. Connections they accepted are not closed.
func (r *Registry) Retain(keep []string) {
	want := make(map[string]bool, len(keep))
	for _, k := range keep {
		want[k] = true
	}
	var gone []*Listener
	r.mu.Lock()
	for k, l := range r.ls {
		if !want[k] {
			gone = append(gone, l)
			delete(r.ls, k)
		}
	}
	r.mu.Unlock()
	for _, l := range gone {
		if err := l.close(); err != nil {
			l.log.Warn("closing listener", "err", err)
		}
	}
}

// Close closes all listeners; Listen fails afterwards.
func (r *Registry) Close() error {
	r.mu.Lock()
	r.closed = true
	ls := r.ls
	r.ls = nil
	r.mu.Unlock()
	var errs []error
	for _, l := range ls {
		errs = append(errs, l.close())
	}
	return errors.Join(errs...)
}

// Listener is one bound TCP socket with its accept loop.
type Listener struct {
	key     string
	ln      net.Listener
	log     *slog.Logger
	handler atomic.Pointer[func(net.Conn)]

	closeOnce sync.Once
	closeErr  error
	quit      chan struct{} // closed by close
	done      chan struct{} // closed when the accept loop has returned
}

// Addr returns the bound address (the real port when the config said :0).
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Key returns the address string the listener is registered under.
func (l *Listener) Key() string { return l.key }

// SetHandler atomically replaces the function every accepted connection is
// handed to and returns the previous one (nil if none). The handler runs on
// the accept loop: it must not block, and it owns the connection. A nil
// handler makes the loop close accepted connections.
func (l *Listener) SetHandler(h func(net.Conn)) (old func(net.Conn)) {
	var p *func(net.Conn)
	if h != nil {
		p = &h
	}
	if prev := l.handler.Swap(p); prev != nil {
		return *prev
	}
	return nil
}

func (l *Listener) serve() {
	defer close(l.done)
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.quit:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE, ENFILE, ECONNABORTED and friends: back off like net/http.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.log.Warn("accept failed, retrying", "err", err, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-l.quit:
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		if h := l.handler.Load(); h != nil {
			(*h)(c)
		} else {
			c.Close()
		}
	}
}

// close closes the socket and waits for the accept loop to return.
func (l *Listener) close() error {
	l.closeOnce.Do(func() {
		close(l.quit)
		l.closeErr = l.ln.Close()
	})
	<-l.done
	return l.closeErr
}
