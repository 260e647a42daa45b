package l4

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/goleak"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/listen"
	"github.com/labgate/labgate/internal/proxyproto"

	"github.com/labgate/labgate/internal/testpeer"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Addresses on 127.0.0.0/8 that play the parts of the test.
var (
	clientIP = netip.MustParseAddr("127.0.0.61") // a VPN/LAN client, talking to private listeners
	relayIP  = netip.MustParseAddr("127.0.0.62") // the trusted relay, talking to public listeners
	gwIP     = netip.MustParseAddr("127.0.0.63") // the gateway's listeners
	beIP     = netip.MustParseAddr("127.0.0.64") // backends

	// What the relay says about the internet client.
	inetClient = netip.MustParseAddrPort("198.51.100.7:40000")
	relayDst   = netip.MustParseAddrPort("203.0.113.7:2525")
)

// received is what a test backend saw on one connection.
type received struct {
	Header *proxyproto.Header // nil for a plain backend
	Data   string             // every byte after the header, until the client's FIN
}

// backend is a real TCP backend on beIP.
type backend struct {
	addr string
	got  chan received
}

// startBackend runs a backend that reads a PROXY header first if withHeader,
// then serve; by default serve echoes until EOF and half-closes.
func startBackend(t *testing.T, withHeader bool, serve func(c *net.TCPConn, br *bufio.Reader) string) *backend {
	t.Helper()
	if serve == nil {
		serve = func(c *net.TCPConn, br *bufio.Reader) string {
			var rec bytes.Buffer
			_, _ = io.Copy(io.MultiWriter(c, &rec), br)
			_ = c.CloseWrite()
			return rec.String()
		}
	}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(beIP, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{addr: ln.Addr().String(), got: make(chan received, 16)}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReaderSize(c, 4096)
				var r received
				if withHeader {
					h, err := proxyproto.Read(br)
					if err != nil {
						t.Errorf("backend: reading the PROXY header: %v", err)
						return
					}
					r.Header = h
				}
				r.Data = serve(c.(*net.TCPConn), br)
				b.got <- r
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return b
}

// next returns what the backend received on its next finished connection.
func (b *backend) next(t *testing.T) received {
	t.Helper()
	select {
	case r := <-b.got:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the backend received no connection")
		return received{}
	}
}

// gateway is a Router behind real listeners, wired as the daemon wires it:
// a public listener admits only the relay and requires its PROXY header
// (listen.Policy), a private one admits everyone without.
type gateway struct {
	r    *Router
	reg  *prometheus.Registry
	logs *testpeer.Buffer
	wg   sync.WaitGroup
}

func newGateway(t *testing.T, opts Options, services ...*config.Service) *gateway {
	t.Helper()
	cfg := &config.Config{
		Path: "lab.yaml",
		Gateway: config.Gateway{
			Public:  &config.PublicListeners{HTTPS: []string{gwIP.String() + ":10443"}, TrustedRelays: []netip.Prefix{netip.PrefixFrom(relayIP, 32)}},
			Private: &config.PrivateListeners{HTTPS: []string{gwIP.String() + ":9443"}},
			Limits:  config.Limits{BackendConnectTimeout: 2 * time.Second},
		},
		Services: services,
	}
	g := &gateway{reg: prometheus.NewRegistry(), logs: &testpeer.Buffer{}}
	opts.Log = slog.New(slog.NewTextHandler(g.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.Metrics = NewMetrics(g.reg)
	r, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	g.r = r
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := g.r.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v (connections were left open)", err)
		}
		g.wg.Wait()
	})
	return g
}

// listen binds a listener of class for route port (the socket's own port is
// random: routing uses Listener.Port) and serves it like the daemon does.
func (g *gateway) listen(t *testing.T, class config.Class, port int) string {
	t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(gwIP, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	l := Listener{Class: class, Proto: "tcp", Addr: ln.Addr().String(), Port: port}
	policy := &listen.Policy{}
	if class == config.Public {
		policy = &listen.Policy{Allow: []netip.Prefix{netip.PrefixFrom(relayIP, 32)}, RequireProxy: true, HeaderTimeout: 2 * time.Second}
	}
	g.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if c = policy.Admit(c); c != nil {
				g.wg.Go(func() { g.r.Handle(l, c) })
			}
		}
	})
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// dial connects from "from" to addr.
func dial(t *testing.T, from netip.Addr, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*net.TCPConn)
}

// dialRelay connects as the relay and sends h first.
func dialRelay(t *testing.T, addr string, h []byte) *net.TCPConn {
	t.Helper()
	c := dial(t, relayIP, addr)
	if _, err := c.Write(h); err != nil {
		t.Fatal(err)
	}
	return c
}

func v2Header(src, dst netip.AddrPort) []byte {
	h := proxyproto.Header{Command: proxyproto.Proxy, Transport: proxyproto.TCP, Source: src, Destination: dst}
	return h.AppendV2(nil)
}

// exchange writes msg, half-closes, and returns everything read until EOF.
func exchange(t *testing.T, c *net.TCPConn, msg string) string {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metric returns the value of the series named exactly by name{labels},
// as written in the exposition, or "" if it is absent.
func (g *gateway) metric(t *testing.T, series string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(g.reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for l := range strings.Lines(rec.Body.String()) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), series+" "); ok {
			return v
		}
	}
	return ""
}

// waitMetric waits for a series to reach want (connections are counted when
// Handle returns, just after the client sees its end).
func (g *gateway) waitMetric(t *testing.T, series, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := g.metric(t, series)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %q, want %q", series, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func addrPortOf(a net.Addr) netip.AddrPort { return a.(*net.TCPAddr).AddrPort() }

func TestProxyHeaderToBackend(t *testing.T) {
	v6Client := netip.MustParseAddrPort("[2001:db8::7]:40001")
	v6Dst := netip.MustParseAddrPort("[2001:db8::1]:2525")
	type tc struct {
		name    string
		class   config.Class
		version string // the route's proxy_protocol
		relay   []byte // the relay's PROXY header (public listeners)
		// want is the header the backend gets; "client" and "listener" are
		// filled in for private listeners.
		want proxyproto.Header
	}
	tests := []tc{
		{name: "public v2", class: config.Public, version: "v2", relay: v2Header(inetClient, relayDst),
			want: proxyproto.Header{Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.TCP, Source: inetClient, Destination: relayDst}},
		{name: "public v1", class: config.Public, version: "v1", relay: v2Header(inetClient, relayDst),
			want: proxyproto.Header{Version: 1, Command: proxyproto.Proxy, Transport: proxyproto.TCP, Source: inetClient, Destination: relayDst}},
		{name: "public v1 from a v1 relay", class: config.Public, version: "v1", relay: []byte("PROXY TCP4 198.51.100.7 203.0.113.7 40000 2525\r\n"),
			want: proxyproto.Header{Version: 1, Command: proxyproto.Proxy, Transport: proxyproto.TCP, Source: inetClient, Destination: relayDst}},
		{name: "public v2 IPv6", class: config.Public, version: "v2", relay: v2Header(v6Client, v6Dst),
			want: proxyproto.Header{Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.TCP, Source: v6Client, Destination: v6Dst}},
		{name: "public v1 IPv6", class: config.Public, version: "v1", relay: v2Header(v6Client, v6Dst),
			want: proxyproto.Header{Version: 1, Command: proxyproto.Proxy, Transport: proxyproto.TCP, Source: v6Client, Destination: v6Dst}},
		{name: "public v2 relay LOCAL stays LOCAL", class: config.Public, version: "v2", relay: (&proxyproto.Header{Command: proxyproto.Local}).AppendV2(nil),
			want: proxyproto.Header{Version: 2, Command: proxyproto.Local}},
		{name: "public v1 relay LOCAL is UNKNOWN", class: config.Public, version: "v1", relay: (&proxyproto.Header{Command: proxyproto.Local}).AppendV2(nil),
			want: proxyproto.Header{Version: 1, Command: proxyproto.Proxy}},
		{name: "private v2", class: config.Private, version: "v2",
			want: proxyproto.Header{Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.TCP}},
		{name: "private v1", class: config.Private, version: "v1",
			want: proxyproto.Header{Version: 1, Command: proxyproto.Proxy, Transport: proxyproto.TCP}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			be := startBackend(t, true, nil)
			g := newGateway(t, Options{}, &config.Service{Name: "mail", Expose: config.Public,
				TCP: []config.L4Route{{Port: 2525, Backend: be.addr, ProxyProtocol: tt.version}}})
			addr := g.listen(t, tt.class, 2525)
			var c *net.TCPConn
			if tt.class == config.Public {
				c = dialRelay(t, addr, tt.relay)
			} else {
				c = dial(t, clientIP, addr)
				tt.want.Source = addrPortOf(c.LocalAddr())
				tt.want.Destination = addrPortOf(c.RemoteAddr())
			}
			if got := exchange(t, c, "EHLO client\r\n"); got != "EHLO client\r\n" {
				t.Errorf("echo = %q", got)
			}
			r := be.next(t)
			if diff := cmp.Diff(&tt.want, r.Header, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("PROXY header at the backend (-want +got):\n%s", diff)
			}
			if r.Data != "EHLO client\r\n" {
				t.Errorf("backend data = %q", r.Data)
			}
			g.waitMetric(t, `labgate_l4_connections_total{port="2525",result="ok",service="mail"}`, "1")
			if tt.want.Source.IsValid() && !strings.Contains(g.logs.String(), "client="+tt.want.Source.String()) {
				t.Errorf("the log does not name the real client %s:\n%s", tt.want.Source, g.logs)
			}
		})
	}
}

func TestPlainBackendGetsRawBytes(t *testing.T) {
	be := startBackend(t, false, nil)
	g := newGateway(t, Options{}, &config.Service{Name: "ssh", Expose: config.Public,
		TCP: []config.L4Route{{Port: 2222, Backend: be.addr}}})
	// Bytes that look like a PROXY header must reach the backend untouched too.
	msg := "SSH-2.0-OpenSSH_9.2\r\n" + string(v2Header(inetClient, relayDst)) + "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"
	for _, class := range []config.Class{config.Public, config.Private} {
		t.Run(class.String(), func(t *testing.T) {
			addr := g.listen(t, class, 2222)
			var c *net.TCPConn
			if class == config.Public {
				// The relay's header and the first bytes in one segment.
				c = dialRelay(t, addr, append(v2Header(inetClient, relayDst), msg...))
				if err := c.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(c)
				if err != nil || string(b) != msg {
					t.Errorf("echo = %q, %v", b, err)
				}
			} else if got := exchange(t, dial(t, clientIP, addr), msg); got != msg {
				t.Errorf("echo = %q", got)
			}
			if r := be.next(t); r.Data != msg {
				t.Errorf("backend got %q, want %q", r.Data, msg)
			}
		})
	}
}

func TestPublicListenerNeverReachesPrivateService(t *testing.T) {
	be := startBackend(t, false, nil)
	g := newGateway(t, Options{},
		&config.Service{Name: "ssh", Expose: config.Private, TCP: []config.L4Route{{Port: 2222, Backend: be.addr}}})

	// The relay, with a valid PROXY header, on a public listener at the
	// private service's port: closed, and no connection to the backend.
	c := dialRelay(t, g.listen(t, config.Public, 2222), v2Header(inetClient, relayDst))
	if b, err := io.ReadAll(c); len(b) > 0 || err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		t.Errorf("public listener: read %q, %v; want the connection closed", b, err)
	}
	g.waitMetric(t, `labgate_l4_connections_total{port="2222",result="no_route",service=""}`, "1")
	if !strings.Contains(g.logs.String(), "no service on this port") {
		t.Errorf("the refusal is not logged:\n%s", g.logs)
	}

	// The same port on a private listener reaches it.
	if got := exchange(t, dial(t, clientIP, g.listen(t, config.Private, 2222)), "hi"); got != "hi" {
		t.Errorf("private listener: echo = %q", got)
	}
	if r := be.next(t); r.Data != "hi" {
		t.Errorf("backend got %q", r.Data)
	}
	select {
	case r := <-be.got:
		t.Errorf("the backend got a second connection: %+v", r)
	default:
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

func TestHalfClose(t *testing.T) {
	t.Run("client first", func(t *testing.T) {
		// The backend answers only after the client's FIN reached it.
		be := startBackend(t, true, func(c *net.TCPConn, br *bufio.Reader) string {
			b, _ := io.ReadAll(br)
			_, _ = io.WriteString(c, "you said: "+string(b))
			return string(b)
		})
		g := newGateway(t, Options{}, &config.Service{Name: "mail", Expose: config.Public,
			TCP: []config.L4Route{{Port: 2525, Backend: be.addr, ProxyProtocol: "v2"}}})
		c := dialRelay(t, g.listen(t, config.Public, 2525), v2Header(inetClient, relayDst))
		if got := exchange(t, c, "request"); got != "you said: request" {
			t.Errorf("client got %q", got)
		}
		if r := be.next(t); r.Data != "request" {
			t.Errorf("backend got %q", r.Data)
		}
		g.waitMetric(t, `labgate_l4_connections_total{port="2525",result="ok",service="mail"}`, "1")
	})
	t.Run("backend first", func(t *testing.T) {
		// The backend sends a banner and its FIN, then still reads.
		be := startBackend(t, false, func(c *net.TCPConn, br *bufio.Reader) string {
			_, _ = io.WriteString(c, "banner")
			_ = c.CloseWrite()
			b, _ := io.ReadAll(br)
			return string(b)
		})
		g := newGateway(t, Options{}, &config.Service{Name: "ssh", Expose: config.Private,
			TCP: []config.L4Route{{Port: 2222, Backend: be.addr}}})
		c := dial(t, clientIP, g.listen(t, config.Private, 2222))
		b, err := io.ReadAll(c) // returns at the backend's FIN
		if err != nil || string(b) != "banner" {
			t.Fatalf("client read %q, %v", b, err)
		}
		if _, err := io.WriteString(c, "after the backend's FIN"); err != nil {
			t.Fatal(err)
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if r := be.next(t); r.Data != "after the backend's FIN" {
			t.Errorf("backend got %q", r.Data)
		}
		g.waitMetric(t, `labgate_l4_connections_total{port="2222",result="ok",service="ssh"}`, "1")
	})
}

func TestIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	be := startBackend(t, false, nil)
	g := newGateway(t, Options{IdleTimeout: idle}, &config.Service{Name: "mqtt", Expose: config.Private,
		TCP: []config.L4Route{{Port: 1883, Backend: be.addr}}})
	addr := g.listen(t, config.Private, 1883)

	t.Run("busy connections stay", func(t *testing.T) {
		c := dial(t, clientIP, addr)
		buf := make([]byte, 1)
		// Traffic for 3× the idle timeout, a byte every 100ms.
		for i := range 10 {
			if _, err := c.Write([]byte{byte('a' + i)}); err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
			if _, err := io.ReadFull(c, buf); err != nil || buf[0] != byte('a'+i) {
				t.Fatalf("read %d: %q, %v", i, buf, err)
			}
			time.Sleep(idle / 3)
		}
		if got := exchange(t, c, "end"); got != "end" {
			t.Errorf("echo = %q", got)
		}
		be.next(t)
		g.waitMetric(t, `labgate_l4_connections_total{port="1883",result="ok",service="mqtt"}`, "1")
	})
	t.Run("idle connections are closed", func(t *testing.T) {
		c := dial(t, clientIP, addr)
		if _, err := io.WriteString(c, "x"); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1)
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		last := time.Now()
		b, err := io.ReadAll(c)
		waited := time.Since(last)
		if len(b) > 0 || err != nil && !isReset(err) {
			t.Errorf("read %q, %v; want the end of the connection", b, err)
		}
		// The kernel counts in jiffies: allow a few milliseconds early.
		if waited < idle-20*time.Millisecond || waited > idle+2*time.Second {
			t.Errorf("closed after %v of silence, want about %v", waited, idle)
		}
		be.next(t)
		g.waitMetric(t, `labgate_l4_connections_total{port="1883",result="idle_timeout",service="mqtt"}`, "1")
	})
}

func TestBackendDown(t *testing.T) {
	// A port nobody listens on.
	ln, err := net.Listen("tcp", netip.AddrPortFrom(beIP, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()

	g := newGateway(t, Options{}, &config.Service{Name: "mail", Expose: config.Public,
		TCP: []config.L4Route{{Port: 2525, Backend: down, ProxyProtocol: "v2"}}})
	c := dialRelay(t, g.listen(t, config.Public, 2525), v2Header(inetClient, relayDst))
	start := time.Now()
	if b, err := io.ReadAll(c); len(b) > 0 || err != nil && !isReset(err) {
		t.Errorf("read %q, %v; want the connection closed", b, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("closed after %v", d)
	}
	g.waitMetric(t, `labgate_l4_connections_total{port="2525",result="backend_down",service="mail"}`, "1")
	g.waitMetric(t, `labgate_l4_active_connections{service="mail"}`, "0")
	logs := g.logs.String()
	if !strings.Contains(logs, "l4 backend unreachable") || !strings.Contains(logs, "client="+inetClient.String()) {
		t.Errorf("the log does not say which client met a down backend:\n%s", logs)
	}
}

func TestBytesCounted(t *testing.T) {
	be := startBackend(t, true, nil)
	g := newGateway(t, Options{}, &config.Service{Name: "mail", Expose: config.Public,
		TCP: []config.L4Route{{Port: 2525, Backend: be.addr, ProxyProtocol: "v2"}}})
	c := dialRelay(t, g.listen(t, config.Public, 2525), v2Header(inetClient, relayDst))

	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := c.Write(payload); err != nil {
			t.Error(err)
		}
		_ = c.CloseWrite()
	})
	got, err := io.ReadAll(c)
	wg.Wait()
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("echo: %d bytes, %v; want %d bytes back", len(got), err, len(payload))
	}
	be.next(t)
	g.waitMetric(t, `labgate_l4_connections_total{port="2525",result="ok",service="mail"}`, "1")
	g.waitMetric(t, `labgate_l4_bytes_total{direction="in",service="mail"}`, "1.048576e+06")
	g.waitMetric(t, `labgate_l4_bytes_total{direction="out",service="mail"}`, "1.048576e+06")
	g.waitMetric(t, `labgate_l4_active_connections{service="mail"}`, "0")
}

func TestCloseKeepsEstablishedConnections(t *testing.T) {
	be := startBackend(t, true, nil)
	g := newGateway(t, Options{}, &config.Service{Name: "mail", Expose: config.Public,
		TCP: []config.L4Route{{Port: 2525, Backend: be.addr, ProxyProtocol: "v2"}}})
	addr := g.listen(t, config.Public, 2525)
	old := dialRelay(t, addr, v2Header(inetClient, relayDst))
	ping := func(msg string) {
		t.Helper()
		if _, err := io.WriteString(old, msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(old, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo %q, %v", buf, err)
		}
	}
	ping("before")
	g.waitMetric(t, `labgate_l4_active_connections{service="mail"}`, "1")

	g.r.Close() // a reload retired this generation

	ping("after Close")
	// New connections are refused.
	c := dialRelay(t, addr, v2Header(inetClient, relayDst))
	if b, err := io.ReadAll(c); len(b) > 0 || err != nil && !isReset(err) {
		t.Errorf("new connection after Close: read %q, %v", b, err)
	}
	g.waitMetric(t, `labgate_l4_connections_total{port="2525",result="refused",service="mail"}`, "1")
	ping("still there")
	if err := old.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(old); len(b) > 0 || err != nil {
		t.Errorf("end: %q, %v", b, err)
	}
	if r := be.next(t); r.Data != "beforeafter Closestill there" {
		t.Errorf("backend got %q", r.Data)
	}
	g.waitMetric(t, `labgate_l4_connections_total{port="2525",result="ok",service="mail"}`, "1")
}

func TestShutdownCutsAfterGrace(t *testing.T) {
	be := startBackend(t, false, nil)
	g := newGateway(t, Options{}, &config.Service{Name: "ssh", Expose: config.Private,
		TCP: []config.L4Route{{Port: 2222, Backend: be.addr}}})
	c := dial(t, clientIP, g.listen(t, config.Private, 2222))
	if _, err := io.WriteString(c, "hi"); err != nil {
		t.Fatal(err)
	}
	g.waitMetric(t, `labgate_l4_active_connections{service="ssh"}`, "1")
	if n := g.r.Active(); n != 1 {
		t.Errorf("Active() = %d, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := g.r.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want %v", err, context.DeadlineExceeded)
	}
	if b, err := io.ReadAll(c); string(b) != "hi" || err != nil && !isReset(err) {
		t.Errorf("read %q, %v; want the echo, then the end", b, err)
	}
	g.waitMetric(t, `labgate_l4_connections_total{port="2222",result="shutdown",service="ssh"}`, "1")
	if n := g.r.Active(); n != 0 {
		t.Errorf("Active() = %d after Shutdown", n)
	}
}

func TestClientWithoutProxyHeader(t *testing.T) {
	be := startBackend(t, false, nil)
	g := newGateway(t, Options{}, &config.Service{Name: "ssh", Expose: config.Public,
		TCP: []config.L4Route{{Port: 2222, Backend: be.addr}}})
	// The relay forgot the header: nothing reaches the backend.
	c := dialRelay(t, g.listen(t, config.Public, 2222), []byte("SSH-2.0-OpenSSH_9.2\r\n"))
	if b, err := io.ReadAll(c); len(b) > 0 || err != nil && !isReset(err) {
		t.Errorf("read %q, %v; want the connection closed", b, err)
	}
	g.waitMetric(t, `labgate_l4_connections_total{port="2222",result="client_error",service="ssh"}`, "1")
	select {
	case r := <-be.got:
		t.Errorf("the backend got a connection: %+v", r)
	default:
	}
}

// A public listener whose connections come without a PROXY policy (a wiring
// mistake) must not pass the relay off as the client.
func TestPublicListenerWithoutProxyPolicy(t *testing.T) {
	be := startBackend(t, true, nil)
	g := newGateway(t, Options{}, &config.Service{Name: "mail", Expose: config.Public,
		TCP: []config.L4Route{{Port: 2525, Backend: be.addr, ProxyProtocol: "v2"}}})
	ln, err := net.Listen("tcp", netip.AddrPortFrom(gwIP, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	g.wg.Go(func() {
		if c, err := ln.Accept(); err == nil {
			g.r.Handle(Listener{Class: config.Public, Proto: "tcp", Addr: ln.Addr().String(), Port: 2525}, c)
		}
	})
	c := dial(t, relayIP, ln.Addr().String())
	if b, err := io.ReadAll(c); len(b) > 0 || err != nil && !isReset(err) {
		t.Errorf("read %q, %v; want the connection closed", b, err)
	}
	g.waitMetric(t, `labgate_l4_connections_total{port="2525",result="client_error",service="mail"}`, "1")
	if !strings.Contains(g.logs.String(), "must require a PROXY header") {
		t.Errorf("the mistake is not logged:\n%s", g.logs)
	}
	select {
	case r := <-be.got:
		t.Errorf("the backend got a connection: %+v", r)
	default:
	}
}

// When gateway.public and gateway.private share a host, Listeners gives a
// public and a private entry with the same Addr: the daemon binds it once and
// picks the class by the socket's source, as here.
func TestSharedAddressClassBySource(t *testing.T) {
	mail := startBackend(t, true, nil)
	ssh := startBackend(t, false, nil)
	g := newGateway(t, Options{},
		&config.Service{Name: "mail", Expose: config.Public, TCP: []config.L4Route{{Port: 2525, Backend: mail.addr, ProxyProtocol: "v2"}}},
		&config.Service{Name: "ssh", Expose: config.Private, TCP: []config.L4Route{{Port: 2222, Backend: ssh.addr}}})

	serveShared := func(port int) string {
		ln, err := net.Listen("tcp", netip.AddrPortFrom(gwIP, 0).String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		pubL := Listener{Class: config.Public, Proto: "tcp", Addr: ln.Addr().String(), Port: port}
		privL := Listener{Class: config.Private, Proto: "tcp", Addr: ln.Addr().String(), Port: port}
		pub := &listen.Policy{Allow: []netip.Prefix{netip.PrefixFrom(relayIP, 32)}, RequireProxy: true, HeaderTimeout: 2 * time.Second}
		priv := &listen.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
		g.wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				l, p := privL, priv
				if pub.Allowed(addrPortOf(c.RemoteAddr()).Addr()) {
					l, p = pubL, pub
				}
				if c = p.Admit(c); c != nil {
					g.wg.Go(func() { g.r.Handle(l, c) })
				}
			}
		})
		return ln.Addr().String()
	}
	mailAddr, sshAddr := serveShared(2525), serveShared(2222)

	// The relay reaches the public service, with the client it names.
	if got := exchange(t, dialRelay(t, mailAddr, v2Header(inetClient, relayDst)), "EHLO"); got != "EHLO" {
		t.Errorf("relay → mail: %q", got)
	}
	if r := mail.next(t); r.Header.Source != inetClient {
		t.Errorf("mail backend: client %v, want %v", r.Header.Source, inetClient)
	}
	// A VPN client reaches it too, as itself, without a header.
	c := dial(t, clientIP, mailAddr)
	if got := exchange(t, c, "EHLO"); got != "EHLO" {
		t.Errorf("client → mail: %q", got)
	}
	if r := mail.next(t); r.Header.Source != addrPortOf(c.LocalAddr()) {
		t.Errorf("mail backend: client %v, want %v", r.Header.Source, c.LocalAddr())
	}
	// The relay does not reach the private service on the same address.
	if b, err := io.ReadAll(dialRelay(t, sshAddr, v2Header(inetClient, relayDst))); len(b) > 0 || err != nil && !isReset(err) {
		t.Errorf("relay → ssh: read %q, %v; want the connection closed", b, err)
	}
	g.waitMetric(t, `labgate_l4_connections_total{port="2222",result="no_route",service=""}`, "1")
	// The VPN client does.
	if got := exchange(t, dial(t, clientIP, sshAddr), "SSH-2.0-x"); got != "SSH-2.0-x" {
		t.Errorf("client → ssh: %q", got)
	}
	ssh.next(t)
}
