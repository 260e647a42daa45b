package l4

import (
	"net"
	"sync"
	"time"
)

// watchIdle calls onIdle once when neither a nor b has sent or received data
// for idle, as far as the kernel can tell (see sinceData). It returns a
// function that stops the watch. Where the kernel cannot tell, it never
// calls onIdle.
func watchIdle(idle time.Duration, a, b net.Conn, onIdle func()) (stop func()) {
	var (
		mu      sync.Mutex
		stopped bool
		t       *time.Timer
	)
	check := func() {
		mu.Lock()
		if stopped {
			mu.Unlock()
			return
		}
		da, okA := sinceData(a)
		db, okB := sinceData(b)
		if !okA || !okB {
			mu.Unlock()
			return // unknown: no idle timeout for this connection
		}
		if d := min(da, db); d < idle {
			// Not idle yet: look again when it could be, at the earliest.
			t.Reset(max(idle-d, idle/64, 5*time.Millisecond))
			mu.Unlock()
			return
		}
		stopped = true
		mu.Unlock()
		onIdle()
	}
	mu.Lock()
	t = time.AfterFunc(idle, check)
	mu.Unlock()
	return func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
	}
}

// tcpConn returns the socket under c: c itself, or what its NetConn method
// (a *proxyproto.Conn's) returns.
func tcpConn(c net.Conn) net.Conn {
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
		return nc.NetConn()
	}
	return c
}
