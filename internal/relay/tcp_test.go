package relay

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/labgate/labgate/internal/proxyproto"
)

// TestTCPHeader: every relayed connection starts with a PROXY v2 header
// carrying the client's address and the relay's listen address, and bytes
// pass both ways.
func TestTCPHeader(t *testing.T) {
	gw := newGateway(t, nil)
	r := startRelay(t, Options{Routes: []Route{
		{Name: "plain", Proto: "tcp", Listen: "127.0.0.1:0", Target: gw.addr()},
		{Name: "peek", Proto: "tcp", Listen: "127.0.0.1:0", Target: gw.addr(), PeekTLS: true},
	}})
	tests := []struct {
		route, client, msg string
	}{
		{"plain", "127.0.0.51", "hello"},
		{"plain", "127.0.0.52", strings.Repeat("x", 100000)},
		{"peek", "127.0.0.53", "SSH-2.0-OpenSSH_9.2\r\n"},   // not TLS: passes unchanged, no TLVs
		{"peek", "127.0.0.54", "\x16\x03\x01\x00\x05hello"}, // looks like TLS, is not a ClientHello
	}
	for _, tt := range tests {
		t.Run(tt.route+"/"+tt.client, func(t *testing.T) {
			c := dialFrom(t, tt.client, r.Addr(tt.route).String())
			if got := roundTrip(t, c, tt.msg); got != tt.msg {
				t.Errorf("echo: got %d bytes, want %q...", len(got), tt.msg[:min(len(tt.msg), 20)])
			}
			want := &proxyproto.Header{
				Version: 2, Command: proxyproto.Proxy, Transport: proxyproto.TCP,
				Source: ap(t, c.LocalAddr()), Destination: ap(t, r.Addr(tt.route)),
			}
			if diff := cmp.Diff(want, gw.header(), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("header (-want +got):\n%s", diff)
			}
		})
	}
}

// testCert returns a self-signed certificate for names.
func testCert(t testing.TB, names ...string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestTLSPassthrough: a real crypto/tls client's SNI and first ALPN protocol
// arrive as TLVs, and the TLS session completes end to end with a tls.Server
// behind the gateway, so the relay passed every byte unmodified.
func TestTLSPassthrough(t *testing.T) {
	cert, pool := testCert(t, "app.example.org")
	gw := newGateway(t, func(c *bufConn) {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}})
		defer tc.Close()
		if err := tc.Handshake(); err != nil {
			t.Errorf("gateway TLS: %v", err)
			return
		}
		io.Copy(tc, tc)
	})
	r := startRelay(t, Options{Routes: []Route{
		{Name: "https", Proto: "tcp", Listen: "127.0.0.1:0", Target: gw.addr(), PeekTLS: true},
	}})
	tests := []struct {
		name       string
		serverName string
		alpn       []string
		wantAuth   string
		wantALPN   string
	}{
		{"sni and alpn", "App.Example.org", []string{"h2", "http/1.1"}, "app.example.org", "h2"},
		{"sni only", "app.example.org", nil, "app.example.org", ""},
		{"alpn only", "", []string{"http/1.1"}, "", "http/1.1"},
		{"neither", "", nil, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := dialFrom(t, "127.0.0.61", r.Addr("https").String())
			cfg := &tls.Config{RootCAs: pool, ServerName: tt.serverName, NextProtos: tt.alpn}
			if tt.serverName == "" {
				cfg.ServerName = "127.0.0.1" // an IP: no SNI is sent, the certificate has it
			}
			c := tls.Client(raw, cfg)
			if got := roundTrip(t, c, "over TLS"); got != "over TLS" {
				t.Errorf("echo over TLS: %q", got)
			}
			h := gw.header()
			if h.Authority != tt.wantAuth || string(h.ALPN) != tt.wantALPN {
				t.Errorf("TLVs: authority %q alpn %q, want %q %q", h.Authority, h.ALPN, tt.wantAuth, tt.wantALPN)
			}
			if h.Source != ap(t, raw.LocalAddr()) {
				t.Errorf("source %v, want %v", h.Source, raw.LocalAddr())
			}
			if tt.alpn != nil && c.ConnectionState().NegotiatedProtocol != tt.alpn[0] {
				t.Errorf("negotiated %q", c.ConnectionState().NegotiatedProtocol)
			}
		})
	}
}

// TestPeekServerSpeaksFirst: on a PeekTLS route a client that waits for the
// server is forwarded after PeekTimeout, without TLVs, never dropped.
func TestPeekServerSpeaksFirst(t *testing.T) {
	gw := newGateway(t, func(c *bufConn) {
		io.WriteString(c, "220 mail ready\r\n")
		echo(c)
	})
	r := startRelay(t, Options{PeekTimeout: 100 * time.Millisecond, Routes: []Route{
		{Name: "mail", Proto: "tcp", Listen: "127.0.0.1:0", Target: gw.addr(), PeekTLS: true},
	}})
	c := dialFrom(t, "127.0.0.62", r.Addr("mail").String())
	start := time.Now()
	banner := make([]byte, len("220 mail ready\r\n"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, banner); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 80*time.Millisecond {
		t.Errorf("banner after %v: did not wait for a ClientHello", d)
	}
	if h := gw.header(); h.Authority != "" || h.ALPN != nil {
		t.Errorf("TLVs without a ClientHello: %+v", h)
	}
	if got := roundTrip(t, c, "EHLO x\r\n"); got != "EHLO x\r\n" {
		t.Errorf("echo %q", got)
	}
}

// TestHalfClose: the client finishes sending, the gateway still answers and
// then closes; the client gets the whole answer and EOF.
func TestHalfClose(t *testing.T) {
	gw := newGateway(t, func(c *bufConn) {
		req, err := io.ReadAll(c)
		if err != nil {
			t.Errorf("gateway read: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // answer after the client's FIN arrived
		io.WriteString(c, "got "+string(req))
	})
	r := startRelay(t, Options{Routes: []Route{{Name: "t", Proto: "tcp", Listen: "127.0.0.1:0", Target: gw.addr()}}})
	c := dialFrom(t, "127.0.0.63", r.Addr("t").String())
	io.WriteString(c, "request")
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(got) != "got request" {
		t.Errorf("answer %q", got)
	}
}

// TestIdleTimeout: a connection without traffic either way is closed after
// IdleTimeout; one with traffic in one direction is not.
func TestIdleTimeout(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	gw := newGateway(t, nil)
	const idle = 300 * time.Millisecond
	r := startRelay(t, Options{Metrics: m, IdleTimeout: idle, Routes: []Route{
		{Name: "t", Proto: "tcp", Listen: "127.0.0.1:0", Target: gw.addr()},
	}})
	quiet := dialFrom(t, "127.0.0.64", r.Addr("t").String())
	busy := dialFrom(t, "127.0.0.65", r.Addr("t").String())
	roundTrip(t, quiet, "x")
	start := time.Now()
	for time.Since(start) < 3*idle {
		roundTrip(t, busy, "y")
		time.Sleep(idle / 6)
	}
	waitClosed(t, quiet, 2*idle)
	roundTrip(t, busy, "still open")
	if n := counter(m.errors.WithLabelValues("t", ReasonIdle)); n != 1 {
		t.Errorf("idle closes counted: %v, want 1", n)
	}
}

// TestSourceLimit: over MaxConnsPerSource concurrent connections from one
// address are refused and counted; other addresses and later connections
// are not affected.
func TestSourceLimit(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	gw := newGateway(t, nil)
	r := startRelay(t, Options{Metrics: m, MaxConnsPerSource: 2, Routes: []Route{
		{Name: "t", Proto: "tcp", Listen: "127.0.0.1:0", Target: gw.addr()},
	}})
	addr := r.Addr("t").String()
	a1 := dialFrom(t, "127.0.0.71", addr)
	a2 := dialFrom(t, "127.0.0.71", addr)
	roundTrip(t, a1, "1")
	roundTrip(t, a2, "2")
	a3 := dialFrom(t, "127.0.0.71", addr)
	waitClosed(t, a3, 2*time.Second)
	roundTrip(t, dialFrom(t, "127.0.0.72", addr), "other source")
	if n := counter(m.errors.WithLabelValues("t", ReasonSourceLimit)); n != 1 {
		t.Errorf("source_limit errors %v, want 1", n)
	}
	if n := counter(m.conns.WithLabelValues("t", ResultRefused)); n != 1 {
		t.Errorf("refused %v, want 1", n)
	}
	a1.Close()
	eventually(t, "the slot to free", func() bool { return r.conns.count() == 2 })
	roundTrip(t, dialFrom(t, "127.0.0.71", addr), "after one closed")
}

// TestConnectRefused: a gateway that refuses the connection costs the client
// its connection, quickly, and is counted.
func TestConnectRefused(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	ln.Close()
	r := startRelay(t, Options{Metrics: m, Routes: []Route{{Name: "t", Proto: "tcp", Listen: "127.0.0.1:0", Target: closed}}})
	c := dialFrom(t, "127.0.0.73", r.Addr("t").String())
	waitClosed(t, c, 2*time.Second)
	eventually(t, "the failure to be counted", func() bool {
		return counter(m.errors.WithLabelValues("t", ReasonConnectRefused)) == 1 &&
			counter(m.conns.WithLabelValues("t", ResultFailed)) == 1
	})
}

// blackhole returns the address of a listener whose backlog is full, so that
// further SYNs are dropped and connecting to it hangs.
func blackhole(t *testing.T) string {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr // the backlog is full
		}
		t.Cleanup(func() { c.Close() })
		if i > 16 {
			t.Skip("could not fill a listen backlog")
		}
	}
}

// TestConnectTimeout: a gateway that never answers the SYN fails the
// connection after ConnectTimeout (the 3 s TCP_SYNCNT step).
func TestConnectTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 3s")
	}
	m := NewMetrics(prometheus.NewRegistry())
	target := blackhole(t)
	r := startRelay(t, Options{Metrics: m, ConnectTimeout: time.Second, Routes: []Route{
		{Name: "t", Proto: "tcp", Listen: "127.0.0.1:0", Target: target},
	}})
	c := dialFrom(t, "127.0.0.74", r.Addr("t").String())
	start := time.Now()
	waitClosed(t, c, 10*time.Second)
	if d := time.Since(start); d < 2*time.Second || d > 6*time.Second {
		t.Errorf("gave up after %v, want about 3s", d)
	}
	eventually(t, "the timeout to be counted", func() bool {
		return counter(m.errors.WithLabelValues("t", ReasonConnectTimeout)) == 1
	})
}

// TestUpdate: a reload keeps a listener whose address is unchanged (same
// bound port, established connections survive), sends new connections to
// the new target, binds added routes and closes removed ones.
func TestUpdate(t *testing.T) {
	tag := func(name string) func(c *bufConn) {
		return func(c *bufConn) {
			io.WriteString(c, name)
			echo(c)
		}
	}
	gwA, gwB := newGateway(t, tag("A")), newGateway(t, tag("B"))
	m := NewMetrics(prometheus.NewRegistry())
	opts := Options{Metrics: m, Routes: []Route{
		{Name: "main", Proto: "tcp", Listen: "127.0.0.1:0", Target: gwA.addr()},
		{Name: "old", Proto: "tcp", Listen: "127.0.0.1:0", Target: gwA.addr()},
	}}
	r := startRelay(t, opts)
	mainAddr, oldAddr := r.Addr("main").String(), r.Addr("old").String()
	readTag := func(c net.Conn) string {
		b := make([]byte, 1)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	before := dialFrom(t, "127.0.0.81", mainAddr)
	if got := readTag(before); got != "A" {
		t.Fatalf("before: %s", got)
	}

	opts.Routes = []Route{
		{Name: "main", Proto: "tcp", Listen: "127.0.0.1:0", Target: gwB.addr()},
		{Name: "new", Proto: "tcp", Listen: "127.0.0.1:0", Target: gwB.addr()},
	}
	if err := r.Update(opts); err != nil {
		t.Fatal(err)
	}
	if got := r.Addr("main").String(); got != mainAddr {
		t.Errorf("main rebound: %s, was %s", got, mainAddr)
	}
	if r.Addr("old") != nil {
		t.Errorf("old still bound")
	}
	if c, err := net.DialTimeout("tcp", oldAddr, time.Second); err == nil {
		c.Close()
		t.Errorf("old listener still accepts")
	}
	roundTrip(t, before, "established survives")
	after := dialFrom(t, "127.0.0.81", mainAddr)
	if got := readTag(after); got != "B" {
		t.Errorf("after update: %s, want B", got)
	}
	if got := readTag(dialFrom(t, "127.0.0.81", r.Addr("new").String())); got != "B" {
		t.Errorf("new route: %s", got)
	}

	// A bad update changes nothing.
	bad := opts
	bad.Routes = append([]Route{{Name: "clash", Proto: "tcp", Listen: mainAddr, Target: gwA.addr()}}, bad.Routes[1:]...)
	if err := r.Update(bad); err == nil {
		t.Fatal("update binding a busy port succeeded")
	}
	if r.Addr("main") == nil || r.Addr("clash") != nil {
		t.Error("a failed update changed the listeners")
	}
	roundTrip(t, before, "still")
}

// TestShutdownGrace: when Run's context ends, the relay stops accepting,
// lets established connections go on for GracePeriod, then closes them.
func TestShutdownGrace(t *testing.T) {
	gw := newGateway(t, nil)
	r, err := New(Options{GracePeriod: 300 * time.Millisecond, ProbeInterval: -1, Routes: []Route{
		{Name: "t", Proto: "tcp", Listen: "127.0.0.1:0", Target: gw.addr()},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	eventually(t, "bind", func() bool { return r.Addr("t") != nil })
	addr := r.Addr("t").String()
	c := dialFrom(t, "127.0.0.82", addr)
	roundTrip(t, c, "before")
	cancel()
	eventually(t, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	roundTrip(t, c, "during grace")
	waitClosed(t, c, 2*time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestNewValidation(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want []string
	}{
		{"bad proto", Options{Routes: []Route{{Name: "a", Proto: "sctp", Listen: ":1", Target: "h:1"}}}, []string{`proto "sctp"`}},
		{"no name", Options{Routes: []Route{{Proto: "tcp", Listen: ":1", Target: "h:1"}}}, []string{"name is empty"}},
		{"dup name", Options{Routes: []Route{{Name: "a", Proto: "tcp", Listen: ":1", Target: "h:1"}, {Name: "a", Proto: "udp", Listen: ":1", Target: "h:1"}}}, []string{"name is used twice"}},
		{"dup listen", Options{Routes: []Route{{Name: "a", Proto: "tcp", Listen: ":1", Target: "h:1"}, {Name: "b", Proto: "tcp", Listen: ":1", Target: "h:2"}}}, []string{`also the listen address of route "a"`}},
		{"target port", Options{Routes: []Route{{Name: "a", Proto: "tcp", Listen: ":1", Target: "h"}}}, []string{`target "h": want host:port`}},
		{"target port 0", Options{Routes: []Route{{Name: "a", Proto: "tcp", Listen: ":1", Target: "h:0"}}}, []string{"port 0"}},
		{"peek udp", Options{Routes: []Route{{Name: "a", Proto: "udp", Listen: ":1", Target: "h:1", PeekTLS: true}}}, []string{"peek_tls needs proto tcp"}},
		{"negative", Options{IdleTimeout: -1, MaxConnsPerSource: -1}, []string{"idle timeout", "limits"}},
		{"all at once", Options{Routes: []Route{{Name: "a", Proto: "x", Listen: "y", Target: "z"}}}, []string{"proto", "listen", "target"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if _, err := New(Options{Routes: []Route{{Name: "a", Proto: "tcp", Listen: ":0", Target: "h:1"}}}); err != nil {
		t.Errorf("valid options: %v", err)
	}
}

func TestSynCount(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want int
	}{{0, 1}, {time.Second, 1}, {5 * time.Second, 1}, {7 * time.Second, 2}, {30 * time.Second, 3}, {31 * time.Second, 4}} {
		if got := synCount(tt.d); got != tt.want {
			t.Errorf("synCount(%v) = %d, want %d", tt.d, got, tt.want)
		}
	}
}
