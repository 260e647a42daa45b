package listen

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/labgate/labgate/internal/proxyproto"
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

const sigV2 = "0d0a0d0a000d0a515549540a"

// serveAddr starts a listener whose connections go through p and are
// answered with the RemoteAddr the application sees.
func serveAddr(t *testing.T, p *Policy) *Listener {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // after the registry's Close: no more handler calls
	r := newRegistry(t)
	l, err := r.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.SetHandler(func(c net.Conn) {
		if c = p.Admit(c); c == nil {
			return
		}
		wg.Go(func() {
			defer c.Close()
			if pc, ok := c.(*proxyproto.Conn); ok {
				if _, err := pc.Header(); err != nil {
					return
				}
			}
			io.WriteString(c, c.RemoteAddr().String()+"\n")
		})
	})
	return l
}

func sum(m map[string]uint64) (n uint64) {
	for _, v := range m {
		n += v
	}
	return n
}

func TestPolicy(t *testing.T) {
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	only2 := []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	tests := []struct {
		name        string
		policy      *Policy
		from        string // client source address; "" = 127.0.0.1
		send        []byte
		want        string // the RemoteAddr the application saw; "self" = the client's socket; "" = refused
		wantRefused map[string]uint64
	}{
		{name: "allow all, no PROXY", want: "self"},
		{name: "source not allowed", policy: &Policy{Allow: only2}, wantRefused: map[string]uint64{ReasonNotAllowed: 1}},
		{name: "source allowed", policy: &Policy{Allow: only2}, from: "127.0.0.2", want: "self"},
		{name: "v1 from a trusted relay", policy: &Policy{Allow: loopback, RequireProxy: true},
			send: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n"), want: "1.2.3.4:1111"},
		{name: "v2 from a trusted relay", policy: &Policy{Allow: loopback, RequireProxy: true},
			send: mustHex(sigV2 + "21 21 0024 20010db8000000000000000000000001 20010db8000000000000000000000002 dc04 01bb"), want: "[2001:db8::1]:56324"},
		{name: "v2 LOCAL health check", policy: &Policy{Allow: loopback, RequireProxy: true},
			send: mustHex(sigV2 + "20 00 0000"), want: "self"},
		{name: "untrusted relay with a header", policy: &Policy{Allow: only2, RequireProxy: true},
			send: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n"), wantRefused: map[string]uint64{ReasonNotAllowed: 1}},
		{name: "trusted relay without a header (timeout)", policy: &Policy{Allow: loopback, RequireProxy: true, HeaderTimeout: 200 * time.Millisecond},
			wantRefused: map[string]uint64{ReasonTimeout: 1}},
		{name: "trusted relay, incomplete header", policy: &Policy{Allow: loopback, RequireProxy: true, HeaderTimeout: 200 * time.Millisecond},
			send: []byte("PROXY TCP4 1.2.3.4"), wantRefused: map[string]uint64{ReasonTimeout: 1}},
		{name: "client speaking HTTP directly", policy: &Policy{Allow: loopback, RequireProxy: true},
			send: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), wantRefused: map[string]uint64{ReasonNoHeader: 1}},
		{name: "garbage header", policy: &Policy{Allow: loopback, RequireProxy: true},
			send: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n"), wantRefused: map[string]uint64{ReasonInvalidHeader: 1}},
		{name: "garbled v2", policy: &Policy{Allow: loopback, RequireProxy: true},
			send: mustHex(sigV2 + "21 41 0000"), wantRefused: map[string]uint64{ReasonInvalidHeader: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var counted []string
			var mu sync.Mutex
			p := tc.policy
			if p == nil {
				p = &Policy{}
			}
			p.OnRefuse = func(reason string) { mu.Lock(); counted = append(counted, reason); mu.Unlock() }
			l := serveAddr(t, p)
			d := net.Dialer{Timeout: 5 * time.Second}
			if tc.from != "" {
				d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(tc.from)}
			}
			c, err := d.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write(tc.send)
			line, err := bufio.NewReader(c).ReadString('\n')
			got := strings.TrimSuffix(line, "\n")
			want := tc.want
			if want == "self" {
				want = c.LocalAddr().String()
			}
			if want == "" && err == nil {
				t.Errorf("connection admitted, app saw %q", got)
			}
			if got != want {
				t.Errorf("app saw RemoteAddr %q (err %v), want %q", got, err, want)
			}
			c.Close()
			var n uint64
			for _, v := range tc.wantRefused {
				n += v
			}
			// The refusal is counted after the close the client saw.
			for deadline := time.Now().Add(2 * time.Second); sum(p.Refused()) < n && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			if diff := cmp.Diff(tc.wantRefused, p.Refused(), cmpEmpty); diff != "" {
				t.Errorf("Refused() (-want +got):\n%s", diff)
			}
			mu.Lock()
			defer mu.Unlock()
			if uint64(len(counted)) != n {
				t.Errorf("OnRefuse called for %v, want %d calls", counted, n)
			}
		})
	}
}

var cmpEmpty = cmp.FilterValues(func(a, b map[string]uint64) bool { return len(a) == 0 && len(b) == 0 }, cmp.Ignore())

// logLines returns a logger and a function that returns what it logged,
// one line per record, without times and error texts.
func logLines() (*slog.Logger, func() []string) {
	var mu sync.Mutex
	var buf bytes.Buffer
	h := slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "err" {
				return slog.Attr{}
			}
			return a
		},
	})
	return slog.New(h), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return strings.FieldsFunc(buf.String(), func(r rune) bool { return r == '\n' })
	}
}

// TestRefusalLogRateLimit: one line per peer per minute, with the number of
// refusals left out; counters count them all.
func TestRefusalLogRateLimit(t *testing.T) {
	log, lines := logLines()
	var clock atomic.Int64 // the accept loop reads it
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	advance := func(d time.Duration) { clock.Add(int64(d)) }
	p := &Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.9/32")}, Log: log}
	p.now = func() time.Time { return time.Unix(0, clock.Load()) }
	l := serveAddr(t, p)
	connect := func(from string) {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("connection admitted")
		}
	}
	waitRefused := func(n uint64) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Second); p.Refused()[ReasonNotAllowed] < n && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
	}
	for range 3 {
		connect("127.0.0.1")
	}
	connect("127.0.0.3")
	waitRefused(4)
	advance(59 * time.Second)
	connect("127.0.0.1")
	waitRefused(5)
	advance(2 * time.Second)
	connect("127.0.0.1")
	waitRefused(6)

	for deadline := time.Now().Add(2 * time.Second); len(lines()) < 3 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond) // the line is written after the count
	}
	want := []string{
		`level=WARN msg="connection refused" peer=127.0.0.1 reason=not_allowed`,
		`level=WARN msg="connection refused" peer=127.0.0.3 reason=not_allowed`,
		`level=WARN msg="connection refused" peer=127.0.0.1 reason=not_allowed suppressed=3`,
	}
	if diff := cmp.Diff(want, lines()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]uint64{ReasonNotAllowed: 6}, p.Refused()); diff != "" {
		t.Errorf("Refused() (-want +got):\n%s", diff)
	}
}

// TestRefusalLogBounded: a flood from many addresses neither grows the
// per-peer map past its bound nor floods the log.
func TestRefusalLogBounded(t *testing.T) {
	log, lines := logLines()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := &Policy{Log: log}
	p.now = func() time.Time { return now }
	p.init()
	for i := range 3 * maxLogPeers {
		p.refuse(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), ReasonNoHeader, nil)
	}
	if n := len(p.peers); n > maxLogPeers {
		t.Errorf("%d peers remembered, bound is %d", n, maxLogPeers)
	}
	if n := len(lines()); n != maxLogPeers {
		t.Errorf("%d lines logged, want %d", n, maxLogPeers)
	}
	if got := p.Refused()[ReasonNoHeader]; got != 3*maxLogPeers {
		t.Errorf("counted %d refusals, want %d", got, 3*maxLogPeers)
	}
	// A minute later the old entries make room again.
	now = now.Add(time.Minute)
	p.refuse(netip.MustParseAddr("192.0.2.1"), ReasonNoHeader, nil)
	if n := len(lines()); n != maxLogPeers+1 {
		t.Errorf("after a minute: %d lines, want %d", n, maxLogPeers+1)
	}
}

func TestAllowed(t *testing.T) {
	tests := []struct {
		allow []string
		addr  string
		want  bool
	}{
		{nil, "203.0.113.7", true},
		{[]string{"127.0.0.0/8"}, "127.0.0.1", true},
		{[]string{"127.0.0.0/8"}, "::ffff:127.0.0.1", true},
		{[]string{"127.0.0.0/8"}, "::ffff:10.0.0.1", false},
		{[]string{"127.0.0.0/8"}, "::1", false},
		{[]string{"::ffff:10.0.0.0/104"}, "10.1.2.3", true},
		{[]string{"::ffff:10.0.0.0/104"}, "::ffff:10.1.2.3", true},
		{[]string{"10.0.0.0/8", "fd00::/8"}, "fd12::1", true},
		{[]string{"10.0.0.0/8", "fd00::/8"}, "fe80::1", false},
		{[]string{"10.0.0.1/8"}, "10.9.9.9", true}, // unmasked prefixes work
	}
	for _, tc := range tests {
		var p Policy
		for _, s := range tc.allow {
			p.Allow = append(p.Allow, netip.MustParsePrefix(s))
		}
		if got := p.Allowed(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("Allow %v: Allowed(%s) = %v, want %v", tc.allow, tc.addr, got, tc.want)
		}
	}
}

// mappedConn is a connection whose peer is an IPv4-mapped IPv6 address, as
// accepted on a dual-stack [::] socket.
type mappedConn struct{ net.Conn }

func (mappedConn) RemoteAddr() net.Addr {
	return net.TCPAddrFromAddrPort(netip.MustParseAddrPort("[::ffff:127.0.0.1]:4321"))
}

func TestAdmitUnmapsPeer(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	p := &Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	if c := p.Admit(mappedConn{a}); c == nil {
		t.Fatal("IPv4-mapped peer refused by an IPv4 prefix")
	}
	a2, b2 := net.Pipe()
	defer b2.Close()
	p2 := &Policy{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	if c := p2.Admit(mappedConn{a2}); c != nil {
		t.Fatal("peer admitted outside Allow")
	}
	a.Close()
}
