package testnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// The test binary doubles as the program run inside hosts by Start:
// `testnet.test helper MODE ARGS`. No nc or socat needed, nothing to build.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "helper" {
		os.Exit(helper(os.Args[2], os.Args[3:]))
	}
	goleak.VerifyTestMain(m)
}

func helper(mode string, args []string) int {
	switch mode {
	case "serve": // serve ADDR: tell each TCP peer its own address
		l, err := net.Listen("tcp", args[0])
		if err != nil {
			fmt.Println(err)
			return 1
		}
		fmt.Println("listening on", l.Addr())
		for {
			c, err := l.Accept()
			if err != nil {
				return 1
			}
			fmt.Fprintln(c, c.RemoteAddr())
			c.Close()
		}
	case "stubborn": // ignores SIGTERM
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ignoring SIGTERM")
		time.Sleep(time.Hour)
	case "exit":
		return 0
	}
	return 2
}

// helperCmd returns the test binary, to Start as a helper.
func helperCmd(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// dialFrom connects from host to addr and returns what the peer sends.
func dialFrom(n *Net, host, addr string, local netip.Addr) (string, error) {
	var got []byte
	err := n.Do(host, func() error {
		d := net.Dialer{Timeout: 300 * time.Millisecond}
		if local.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: local.AsSlice()}
		}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		got, err = io.ReadAll(c)
		return err
	})
	return strings.TrimSpace(string(got)), err
}

func TestAddresses(t *testing.T) {
	t.Parallel()
	n := New(t, "client", "relay", "gateway", "backend")
	for i, h := range n.Hosts() {
		want := netip.AddrFrom4([4]byte{10, 77, 0, byte(i + 1)})
		if got := n.Addr(h); got != want {
			t.Errorf("Addr(%s) = %v, want %v", h, got, want)
		}
		out, err := n.Run(h, "ip", "-brief", "addr", "show")
		if err != nil {
			t.Fatal(err)
		}
		// Only lo and eth0: the host's own view, not the machine's.
		var links []string
		for line := range strings.Lines(out) {
			links = append(links, strings.Fields(line)[0])
		}
		if len(links) != 2 || links[0] != "lo" || !strings.HasPrefix(links[1], "eth0@") {
			t.Errorf("%s: links %q, want lo and eth0 only:\n%s", h, links, out)
		}
		if !strings.Contains(out, want.String()+"/24") || !strings.Contains(out, "127.0.0.1/8") {
			t.Errorf("%s: want %v/24 and 127.0.0.1/8 in:\n%s", h, want, out)
		}
	}
}

func TestTCPBetweenHosts(t *testing.T) {
	t.Parallel()
	n := New(t, "client", "server")
	srv := netip.AddrPortFrom(n.Addr("server"), 8080).String()

	// A server made with Do; it accepts on another goroutine.
	var l net.Listener
	err := n.Do("server", func() (err error) {
		l, err = net.Listen("tcp", srv)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	remote := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			remote <- err.Error()
			return
		}
		defer c.Close()
		remote <- c.RemoteAddr().String()
		fmt.Fprintln(c, "hello")
	}()

	got, err := dialFrom(n, "client", srv, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	if got != "hello" {
		t.Errorf("client read %q, want hello", got)
	}
	ap, err := netip.ParseAddrPort(<-remote)
	if err != nil {
		t.Fatal(err)
	}
	if ap.Addr() != n.Addr("client") {
		t.Errorf("server saw %v, want the client's %v", ap, n.Addr("client"))
	}

	// The goroutine is back in the machine's namespace: the server's
	// address is not local here.
	if l, err := net.Listen("tcp", srv); err == nil {
		l.Close()
		t.Errorf("listening on %s worked outside the host", srv)
	}
}

func TestLoopbackIsPerHost(t *testing.T) {
	t.Parallel()
	n := New(t, "a", "b")
	l := n.Listen("a", "tcp", "127.0.0.1:0")
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, "a")
			c.Close()
		}
	}()
	if got, err := dialFrom(n, "a", l.Addr().String(), netip.Addr{}); err != nil || got != "a" {
		t.Errorf("from a to its own loopback: %q, %v", got, err)
	}
	if _, err := dialFrom(n, "b", l.Addr().String(), netip.Addr{}); err == nil {
		t.Errorf("b reached a's loopback %v", l.Addr())
	}
}

func TestUDP(t *testing.T) {
	t.Parallel()
	n := New(t, "client", "server")
	srv := n.ListenPacket("server", "udp", netip.AddrPortFrom(n.Addr("server"), 5353).String())
	cl := n.ListenPacket("client", "udp", netip.AddrPortFrom(n.Addr("client"), 0).String())
	if _, err := cl.WriteTo([]byte("ping"), srv.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	k, from, err := srv.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := from.(*net.UDPAddr).AddrPort().Addr().Unmap(); string(buf[:k]) != "ping" || got != n.Addr("client") {
		t.Errorf("server got %q from %v, want ping from %v", buf[:k], got, n.Addr("client"))
	}
}

func TestHTTPStyleDial(t *testing.T) {
	t.Parallel()
	n := New(t, "client", "server")
	l := n.Listen("server", "tcp", netip.AddrPortFrom(n.Addr("server"), 0).String())
	go func() {
		c, err := l.Accept()
		if err == nil {
			fmt.Fprintln(c, c.RemoteAddr())
			c.Close()
		}
	}()
	// DialContext works from a goroutine that never called Do, as an
	// http.Transport's dialer does.
	dial := n.DialContext("client")
	res := make(chan string, 1)
	go func() {
		c, err := dial(context.Background(), "tcp", l.Addr().String())
		if err != nil {
			res <- err.Error()
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		res <- strings.TrimSpace(string(b))
	}()
	ap, err := netip.ParseAddrPort(<-res)
	if err != nil || ap.Addr() != n.Addr("client") {
		t.Errorf("server saw %v (%v), want %v", ap, err, n.Addr("client"))
	}
}

func TestStart(t *testing.T) {
	t.Parallel()
	n := New(t, "client", "gateway")
	srv := netip.AddrPortFrom(n.Addr("gateway"), 8080).String()
	p := n.Start("gateway", helperCmd(t), "helper", "serve", srv)
	n.WaitTCP("client", srv)
	// The helper writes its line after it listens, and the pipe carries it
	// over a moment later: wait for it.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(p.Output(), "listening on "+srv); {
		if time.Now().After(deadline) {
			t.Errorf("output %q, want listening on %s", p.Output(), srv)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	got, err := dialFrom(n, "client", srv, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	if ap, err := netip.ParseAddrPort(got); err != nil || ap.Addr() != n.Addr("client") {
		t.Errorf("helper saw %q, want the client's %v", got, n.Addr("client"))
	}

	// A second client address, for "untrusted" peers.
	extra := netip.MustParsePrefix("10.77.0.200/24")
	n.AddAddr("client", extra)
	got, err = dialFrom(n, "client", srv, extra.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if ap, err := netip.ParseAddrPort(got); err != nil || ap.Addr() != extra.Addr() {
		t.Errorf("helper saw %q, want %v", got, extra.Addr())
	}

	if err := p.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if err := unix.Kill(p.PID(), 0); !errors.Is(err, unix.ESRCH) {
		t.Errorf("after Stop, kill(%d, 0) = %v, want ESRCH", p.PID(), err)
	}
	if err := p.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestStopKillsAfterGrace(t *testing.T) {
	t.Parallel()
	n := New(t, "h")
	p := n.Start("h", helperCmd(t), "helper", "stubborn")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.Output(), "ignoring SIGTERM") {
		if time.Now().After(deadline) {
			t.Fatalf("helper did not start: %q", p.Output())
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.grace = 100 * time.Millisecond
	start := time.Now()
	err := p.Stop()
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Stop = %v, want an error saying it was killed", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Stop took %v", d)
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	n := New(t, "h")
	if _, err := n.Run("h", helperCmd(t), "helper", "nonsense"); err == nil || !strings.Contains(err.Error(), "exit status 2") {
		t.Errorf("Run of a failing command = %v, want exit status 2", err)
	}
	if _, err := n.Run("h", "/nonexistent/program"); err == nil {
		t.Error("Run of a missing program succeeded")
	}
}

func TestCutRestore(t *testing.T) {
	t.Parallel()
	n := New(t, "relay", "gateway")
	l := n.Listen("gateway", "tcp", netip.AddrPortFrom(n.Addr("gateway"), 0).String())
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, "up")
			c.Close()
		}
	}()
	addr := l.Addr().String()
	if _, err := dialFrom(n, "relay", addr, netip.Addr{}); err != nil {
		t.Fatalf("before Cut: %v", err)
	}
	n.Cut("relay")
	// Dropped silently, as with a pulled cable: a timeout, not a refusal.
	var ne net.Error
	if _, err := dialFrom(n, "relay", addr, netip.Addr{}); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("relay to gateway while cut off: %v, want a timeout", err)
	}
	if _, err := dialFrom(n, "gateway", netip.AddrPortFrom(n.Addr("relay"), 80).String(), netip.Addr{}); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("gateway to relay while cut off: %v, want a timeout", err)
	}
	n.Restore("relay")
	if _, err := dialFrom(n, "relay", addr, netip.Addr{}); err != nil {
		t.Errorf("after Restore: %v", err)
	}
}

func TestCleanupRemovesEverything(t *testing.T) {
	var n *Net
	var pid int
	t.Run("net", func(t *testing.T) {
		n = New(t, "client", "relay", "gateway", "backend")
		pid = n.Start("relay", helperCmd(t), "helper", "serve", netip.AddrPortFrom(n.Addr("relay"), 80).String()).PID()
		n.WaitTCP("client", netip.AddrPortFrom(n.Addr("relay"), 80).String())
	})
	if n == nil {
		t.Fatal("no Net")
	}
	out, err := exec.Command(n.ip, "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	for line := range strings.Lines(string(out)) {
		if name := strings.Fields(line)[0]; name == n.bridge || strings.HasPrefix(name, n.bridge+"-") {
			t.Errorf("namespace %s left behind", name)
		}
	}
	if err := unix.Kill(pid, 0); !errors.Is(err, unix.ESRCH) {
		t.Errorf("process %d left behind: kill(0) = %v", pid, err)
	}
	if err := n.Do("client", func() error { return nil }); err == nil {
		t.Error("Do after cleanup succeeded")
	}
}

func TestRemoveStale(t *testing.T) {
	ip, err := lookIP()
	if err != nil {
		unavailable(t, err)
	}
	// A PID that has just exited, most likely not reused soon.
	exited := exec.Command(helperCmd(t), "helper", "exit")
	exited.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0") // -race waits 1s at exit
	if err := exited.Run(); err != nil {
		t.Fatal(err)
	}
	dead := prefix + strconv.Itoa(exited.Process.Pid) + "-1"
	// PID 1 started before any namespace made now: its owner still runs.
	us := strconv.Itoa(os.Getpid())
	live := prefix + "1-" + us
	mine := prefix + us + "-stale-test"
	other := "labgate-not-ours-" + us
	names := []string{dead, dead + "-client", live, mine, other}
	for _, ns := range names {
		if out, err := exec.Command(ip, "netns", "add", ns).CombinedOutput(); err != nil {
			unavailable(t, fmt.Errorf("ip netns add: %v: %s", err, out))
		}
	}
	t.Cleanup(func() {
		for _, ns := range names {
			exec.Command(ip, "netns", "del", ns).Run()
		}
	})
	removed, err := removeStale(ip)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range names {
		_, err := os.Stat("/run/netns/" + ns)
		wantGone := ns == dead || ns == dead+"-client"
		if gone := err != nil; gone != wantGone {
			t.Errorf("%s: gone %v, want %v (removed %v)", ns, gone, wantGone, removed)
		}
	}
}

func TestOwner(t *testing.T) {
	for _, tc := range []struct {
		ns   string
		pid  int
		ours bool
	}{
		{"lgtest-123-4", 123, true},
		{"lgtest-123-4-client", 123, true},
		{"lgtest-x-4", 0, false},
		{"lgtest-123", 0, false},
		{"other-123-4", 0, false},
		{"lgtest--4", 0, false},
	} {
		pid, ok := owner(tc.ns)
		if ok != tc.ours || (ok && pid != tc.pid) {
			t.Errorf("owner(%q) = %d, %v; want %d, %v", tc.ns, pid, ok, tc.pid, tc.ours)
		}
	}
}

func TestNewIsFast(t *testing.T) {
	t.Parallel()
	start := time.Now()
	New(t, "client", "relay", "gateway", "backend")
	d := time.Since(start)
	t.Logf("New with 4 hosts: %v", d)
	if d > 5*time.Second { // a second is plenty; leave room for a loaded machine
		t.Errorf("New with 4 hosts took %v", d)
	}
}

func BenchmarkNew(b *testing.B) {
	for b.Loop() {
		New(b, "client", "relay", "gateway", "backend").cleanup()
	}
}

func TestBadHostNames(t *testing.T) {
	for _, hosts := range [][]string{{"Client"}, {"a", "a"}, {"has space"}, {}} {
		t.Run(strings.Join(hosts, ","), func(t *testing.T) {
			ft := &fatalRecorder{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				New(ft, hosts...)
			}()
			<-done
			if !ft.fataled {
				t.Errorf("New(%q) did not fail", hosts)
			}
		})
	}
}

// fatalRecorder records a Fatal instead of ending the test.
type fatalRecorder struct {
	testing.TB
	fataled bool
}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.fataled = true
	f.TB.Logf("(expected) "+format, args...)
	runtime.Goexit()
}

func (f *fatalRecorder) Skipf(format string, args ...any) {
	f.TB.Skipf(format, args...)
}
