// Command churn measures how many new TCP connections per second go through
// a relay (bench/relay.sh): each of N workers connects, writes one byte, reads
// the one byte echoed back, closes, and starts over, for a fixed time. The
// echo server (bench/l4sink -once) closes its side right after answering, so
// the server closes first, as an HTTP/1.0 server or an SMTP server after QUIT
// would, and TIME_WAIT stays off the client's and the relay's outgoing
// connections.
//
//	churn -addr 127.0.0.1:7000 -workers 64 -d 10s
//
// It prints one line: "conns N seconds S rate R errors E" (R = N/S, counting
// only connections that got their byte back). The far end is an echo server
// (bench/l4sink), behind the relay under test.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7000", "`address` to connect to")
	workers := flag.Int("workers", 64, "concurrent connections")
	dur := flag.Duration("d", 10*time.Second, "how long to run")
	flag.Parse()

	raddr, err := net.ResolveTCPAddr("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var conns, errs atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	deadline := start.Add(*dur)
	var wg sync.WaitGroup
	for range *workers {
		wg.Go(func() {
			b := []byte{'x'}
			for time.Now().Before(deadline) {
				if err := once(raddr, b); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					time.Sleep(time.Millisecond) // don't spin on a dead target
					continue
				}
				conns.Add(1)
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	fmt.Printf("conns %d seconds %.3f rate %.0f errors %d\n", conns.Load(), secs, float64(conns.Load())/secs, errs.Load())
	if e := firstErr.Load(); e != nil {
		fmt.Fprintf(os.Stderr, "churn: first error: %v\n", e)
	}
	if conns.Load() == 0 {
		os.Exit(1)
	}
}

// once is one connection: connect, one byte there and back, close.
func once(raddr *net.TCPAddr, b []byte) error {
	c, err := net.DialTCP("tcp", nil, raddr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(b); err != nil {
		return err
	}
	var got [1]byte
	if _, err := io.ReadFull(c, got[:]); err != nil {
		return err
	}
	if got[0] != b[0] {
		return errors.New("wrong byte echoed")
	}
	return nil
}
