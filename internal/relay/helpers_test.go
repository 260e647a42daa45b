package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/labgate/labgate/internal/proxyproto"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// gateway is a fake gateway: it reads the PROXY header of every connection
// and then hands the connection to serve.
type gateway struct {
	t       testing.TB
	ln      net.Listener
	headers chan *proxyproto.Header
	wg      sync.WaitGroup
}

// bufConn is a connection whose reads go through the bufio.Reader that read
// the PROXY header. It embeds net.Conn, not *net.TCPConn, so that io.Copy
// cannot reach the socket's WriteTo around the buffer.
type bufConn struct {
	net.Conn
	tcp *net.TCPConn
	r   *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *bufConn) CloseWrite() error          { return c.tcp.CloseWrite() }

// newGateway starts a fake gateway on 127.0.0.1:0. serve runs for every
// connection after its header (nil: echo).
func newGateway(t testing.TB, serve func(c *bufConn)) *gateway {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if serve == nil {
		serve = echo
	}
	g := &gateway{t: t, ln: ln, headers: make(chan *proxyproto.Header, 1024)}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				defer c.Close()
				br := bufio.NewReaderSize(c, 4096)
				h, err := proxyproto.Read(br)
				if err != nil {
					t.Errorf("gateway: %v", err)
					return
				}
				g.headers <- h
				serve(&bufConn{c, c.(*net.TCPConn), br})
			}()
		}
	}()
	t.Cleanup(g.close)
	return g
}

func (g *gateway) addr() string { return g.ln.Addr().String() }

func (g *gateway) close() {
	g.ln.Close()
	g.wg.Wait()
}

// header waits for the next PROXY header the gateway read.
func (g *gateway) header() *proxyproto.Header {
	g.t.Helper()
	select {
	case h := <-g.headers:
		return h
	case <-time.After(5 * time.Second):
		g.t.Fatal("gateway: no connection")
		return nil
	}
}

func echo(c *bufConn) {
	io.Copy(c, c)
	c.CloseWrite()
}

// startRelay runs a relay with opts until the test ends.
func startRelay(t testing.TB, opts Options) *Relay {
	t.Helper()
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	if opts.ProbeInterval == 0 {
		opts.ProbeInterval = -1
	}
	if opts.GracePeriod == 0 {
		opts.GracePeriod = time.Second
	}
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	// Run binds before it does anything else; wait for that.
	deadline := time.Now().Add(5 * time.Second)
	for _, rt := range opts.Routes {
		for r.Addr(rt.Name) == nil {
			select {
			case err := <-done:
				t.Fatalf("Run: %v", err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("route %s never bound", rt.Name)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return r
}

// dialFrom connects from the loopback address src (e.g. "127.0.0.51").
func dialFrom(t testing.TB, src, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// roundTrip writes msg and reads as many bytes back.
func roundTrip(t testing.TB, c net.Conn, msg string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(buf)
}

// waitClosed waits until the peer closes c (EOF or reset) and fails the
// test if that takes longer than within.
func waitClosed(t testing.TB, c net.Conn, within time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	buf := make([]byte, 512)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || !isTimeout(err) {
			return
		}
		t.Fatalf("connection still open after %v", within)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func ap(t testing.TB, a net.Addr) netip.AddrPort {
	t.Helper()
	return proxyproto.AddrPortOf(a)
}

// counter reads the value of one counter or gauge series.
func counter(c prometheus.Collector) float64 {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || len(mfs[0].GetMetric()) != 1 {
		panic(fmt.Sprintf("counter: %v, %d families", err, len(mfs)))
	}
	m := mfs[0].GetMetric()[0]
	if m.GetCounter() != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// eventually polls cond for up to 5s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
