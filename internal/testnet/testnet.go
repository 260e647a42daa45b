// Package testnet gives end-to-end tests several hosts on one machine: each
// host is a network namespace with its own address, and all hosts hang off one
// Ethernet bridge that lives in a namespace of its own, so the machine's own
// network (links, addresses, routes, firewall) is never touched.
//
//	n := testnet.New(t, "client", "relay", "gateway", "backend")
//	gw := n.Start("gateway", labgate, "serve", "-c", cfg)    // a process inside "gateway"
//	n.WaitTCP("client", netip.AddrPortFrom(n.Addr("gateway"), 443).String())
//	c := &http.Client{Transport: &http.Transport{DialContext: n.DialContext("client")}}
//
// Host i (in the order given to New, from 0) has the address 10.77.0.(i+1)/24
// on its interface eth0; the subnet is one L2 segment, so there is no router,
// no default route and no name resolution: use [Net.Addr]. Every namespace has
// its loopback up, so 127.0.0.1 inside a host is that host's own.
//
// New skips the test when it cannot make namespaces (not root, no `ip`), and
// fails it instead under CI=true. Everything is removed when the test ends:
// first the processes started with [Net.Start] (by PID: SIGTERM, then SIGKILL
// after 5s) and any other process left inside the namespaces, then the
// namespaces. Namespaces left behind by a test binary that died (they are
// named lgtest-PID-N[-host]) are removed by the next New in any package.
//
// A Net belongs to the test given to New. Its methods without an error result
// report problems with that test's t.Fatal and so, like t.Fatal, must be
// called from that test's goroutine; parallel subtests make a Net each.
//
// # Go code inside a host
//
// [Net.Do] runs a function with its goroutine's OS thread moved into a host's
// namespace. Sockets are bound to the namespace they were created in, so a
// listener or connection made inside Do stays in the host for its whole life,
// and may then be used from any goroutine. Everything else does not carry
// over:
//   - goroutines started inside f run on other threads, in the machine's own
//     namespace: create their sockets inside f, or call Do in them again;
//   - name resolution may run on another goroutine: dial IP literals (the host
//     names of a Net do not resolve anyway);
//   - a net.Dialer's dual-stack fallback races on other goroutines: Do's helpers
//     ([Net.DialContext]) switch it off; a plain net.Dial of an IP literal is
//     fine;
//   - http.Transport dials on goroutines of its own: give it
//     [Net.DialContext];
//   - os/exec inside f does start the child in the namespace, but without the
//     host's /sys view that `ip netns exec` sets up: use [Net.Start] or
//     [Net.Run].
package testnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// prefix starts the name of every namespace this package makes; the
	// name goes on with the PID of the test binary that made it.
	prefix = "lgtest-"
	// runTimeout bounds [Net.Run].
	runTimeout = 30 * time.Second
	// waitTimeout bounds the waits of New, Restore and WaitTCP.
	waitTimeout = 10 * time.Second
	// stopGrace is how long a process has between SIGTERM and SIGKILL.
	stopGrace = 5 * time.Second
	// ifname is each host's interface on the shared segment.
	ifname = "eth0"
)

// subnet is the shared segment; host i gets its address i+1.
var subnet = netip.MustParsePrefix("10.77.0.0/24")

var (
	hostName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
	seq      atomic.Uint64 // makes namespace names unique within the process
	stale    sync.Once     // the first New of the process removes stale namespaces
)

// Net is a set of hosts (network namespaces) joined by one bridge, which sits
// in a namespace of its own. It is made by New and removed when the test ends.
type Net struct {
	t      testing.TB
	ip     string // path of the ip(8) binary
	bridge string // name of the bridge's namespace; hosts' are bridge+"-"+host
	hosts  map[string]*node
	order  []string // host names in the order given to New

	mu        sync.Mutex
	procs     []*Proc
	closed    bool
	cleanOnce sync.Once
}

type node struct {
	name string
	ns   string     // namespace name, under /run/netns
	port string     // the host's port on the bridge, in the bridge's namespace
	addr netip.Addr // address on the shared subnet
	fd   *os.File   // the namespace, for Do
}

// New makes the hosts, each in its own network namespace with an address on
// one shared subnet, and returns when every host's loopback and eth0 are up.
// Host names are short lowercase words ("client", "relay-2"); the namespaces'
// names are made unique per test. Making four hosts takes a few milliseconds.
func New(t testing.TB, hosts ...string) *Net {
	t.Helper()
	if len(hosts) == 0 || len(hosts) > 250 {
		t.Fatalf("testnet.New: want 1 to 250 hosts, got %d", len(hosts))
	}
	seen := map[string]bool{}
	for _, name := range hosts {
		if !hostName.MatchString(name) {
			t.Fatalf("testnet.New: host name %q: want a lowercase letter, then up to 31 letters, digits or '-'", name)
		}
		if seen[name] {
			t.Fatalf("testnet.New: host %q given twice", name)
		}
		seen[name] = true
	}
	ip, err := lookIP()
	if err != nil {
		unavailable(t, err)
	}
	stale.Do(func() {
		removed, err := removeStale(ip)
		if len(removed) > 0 {
			t.Logf("testnet: removed namespaces left behind by earlier runs: %s", strings.Join(removed, " "))
		}
		if err != nil {
			t.Logf("testnet: removing namespaces left behind by earlier runs: %v", err)
		}
	})

	n := &Net{
		t:      t,
		ip:     ip,
		bridge: prefix + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatUint(seq.Add(1), 10),
		hosts:  make(map[string]*node, len(hosts)),
	}
	for i, name := range hosts {
		n.hosts[name] = &node{
			name: name,
			ns:   n.bridge + "-" + name,
			port: "p" + strconv.Itoa(i),
			addr: nth(subnet, i+1),
		}
		n.order = append(n.order, name)
	}
	t.Cleanup(n.cleanup)

	// All namespaces in one ip(8) process. Failing here means the machine
	// cannot make namespaces at all (a container without CAP_SYS_ADMIN, say).
	var b strings.Builder
	fmt.Fprintf(&b, "netns add %s\n", n.bridge)
	for _, h := range n.hostList() {
		fmt.Fprintf(&b, "netns add %s\n", h.ns)
	}
	if err := n.batch("", b.String()); err != nil {
		unavailable(t, err)
	}

	// The bridge, and each host's veth pair: one end a bridge port, the other
	// end created straight inside the host, so no link ever passes through
	// the machine's own namespace.
	b.Reset()
	b.WriteString("link set lo up\nlink add br0 type bridge\nlink set br0 up\n")
	for _, h := range n.hostList() {
		fmt.Fprintf(&b, "link add %s type veth peer name %s netns %s\n", h.port, ifname, h.ns)
		fmt.Fprintf(&b, "link set %s master br0 up\n", h.port)
	}
	if err := n.batch(n.bridge, b.String()); err != nil {
		t.Fatalf("testnet.New: making the bridge: %v", err)
	}

	err = n.eachHost(func(h *node) error {
		return n.batch(h.ns, fmt.Sprintf("link set lo up\naddr add %s dev %s\nlink set %s up\n",
			netip.PrefixFrom(h.addr, subnet.Bits()), ifname, ifname))
	})
	if err != nil {
		t.Fatalf("testnet.New: configuring hosts: %v", err)
	}
	for _, h := range n.hostList() {
		if h.fd, err = os.Open("/run/netns/" + h.ns); err != nil {
			t.Fatalf("testnet.New: %v", err)
		}
	}
	for _, h := range n.hostList() {
		if err := n.waitLinks(h.name); err != nil {
			t.Fatalf("testnet.New: %v", err)
		}
	}
	return n
}

// Hosts returns the host names, in the order given to New.
func (n *Net) Hosts() []string { return append([]string(nil), n.order...) }

// Addr returns host's address on the shared subnet.
func (n *Net) Addr(host string) netip.Addr { return n.host(host).addr }

// AddAddr adds an address to host's eth0, for example a second client address
// on the shared subnet (10.77.0.200/24) that a test treats as untrusted.
// IPv6 addresses are added without duplicate address detection, so they are
// usable at once.
func (n *Net) AddAddr(host string, a netip.Prefix) {
	n.t.Helper()
	h := n.host(host)
	cmd := fmt.Sprintf("addr add %s dev %s", a, ifname)
	if a.Addr().Is6() {
		cmd += " nodad"
	}
	if err := n.batch(h.ns, cmd+"\n"); err != nil {
		n.t.Fatalf("testnet: adding %s to %s: %v", a, host, err)
	}
}

// Cut takes host off the network as if its cable were pulled at the switch:
// its port on the bridge goes down, so its eth0 loses carrier. Packets to and
// from it are dropped silently (no RST, no ICMP): established connections
// stall and new ones time out. Its addresses stay.
func (n *Net) Cut(host string) {
	n.t.Helper()
	h := n.host(host)
	if err := n.batch(n.bridge, "link set "+h.port+" down\n"); err != nil {
		n.t.Fatalf("testnet: cutting %s: %v", host, err)
	}
}

// Restore puts a host taken off by Cut back, and returns when its link is up.
// It also empties every host's ARP cache, so that an address that failed to
// resolve during the cut is asked for again at once rather than after the
// kernel's 1s retry; connections that were stalled recover at TCP's own pace.
func (n *Net) Restore(host string) {
	n.t.Helper()
	if err := n.batch(n.bridge, "link set "+n.host(host).port+" up\n"); err != nil {
		n.t.Fatalf("testnet: restoring %s: %v", host, err)
	}
	if err := n.waitLinks(host); err != nil {
		n.t.Fatalf("testnet: restoring %s: %v", host, err)
	}
	flush := func(h *node) error { return n.batch(h.ns, "neigh flush dev "+ifname+"\n") }
	if err := n.eachHost(flush); err != nil {
		n.t.Fatalf("testnet: restoring %s: %v", host, err)
	}
}

// eachHost runs f for every host at once.
func (n *Net) eachHost(f func(*node) error) error {
	var wg sync.WaitGroup
	errs := make([]error, len(n.order))
	for i, h := range n.hostList() {
		wg.Go(func() { errs[i] = f(h) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Do runs f with the calling goroutine's OS thread inside host's network
// namespace, and moves the thread back afterwards (also when f panics or calls
// t.FailNow). Sockets created inside f belong to the host for good; see the
// package documentation for what does not carry over (goroutines started by f,
// name resolution, os/exec). Do may be nested, and called from any goroutine.
//
// If the thread cannot be moved back, Do returns an error and leaves the
// goroutine locked to it, so that the runtime discards the thread when the
// goroutine exits rather than reuse it.
func (n *Net) Do(host string, f func() error) (err error) {
	h := n.host(host)
	if h.fd == nil {
		return fmt.Errorf("testnet: host %s is not ready", host)
	}
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("testnet: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(int(h.fd.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("testnet: entering %s: %w", host, err)
	}
	defer func() {
		if rerr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); rerr != nil {
			// Stay locked: this thread must not run other goroutines.
			err = errors.Join(err, fmt.Errorf("testnet: leaving %s: %w (the goroutine stays in it)", host, rerr))
			return
		}
		runtime.UnlockOSThread()
	}()
	return f()
}

// DialContext returns a dial function that connects from inside host, for an
// http.Transport or anything else taking one. Dial IP literals.
func (n *Net) DialContext(host string) func(ctx context.Context, network, address string) (net.Conn, error) {
	n.host(host)                       // fail early on a wrong name
	d := net.Dialer{FallbackDelay: -1} // no dual-stack race on other goroutines
	return func(ctx context.Context, network, address string) (c net.Conn, err error) {
		err = n.Do(host, func() error {
			c, err = d.DialContext(ctx, network, address)
			return err
		})
		return c, err
	}
}

// Listen listens on address inside host; the listener is closed when the test
// ends. Its Accept may be called from any goroutine.
func (n *Net) Listen(host, network, address string) net.Listener {
	n.t.Helper()
	var l net.Listener
	err := n.Do(host, func() (err error) {
		l, err = net.Listen(network, address)
		return err
	})
	if err != nil {
		n.t.Fatalf("testnet: listening on %s %s in %s: %v", network, address, host, err)
	}
	n.t.Cleanup(func() { l.Close() })
	return l
}

// ListenPacket is Listen for datagrams (udp, udp4, udp6).
func (n *Net) ListenPacket(host, network, address string) net.PacketConn {
	n.t.Helper()
	var c net.PacketConn
	err := n.Do(host, func() (err error) {
		c, err = net.ListenPacket(network, address)
		return err
	})
	if err != nil {
		n.t.Fatalf("testnet: listening on %s %s in %s: %v", network, address, host, err)
	}
	n.t.Cleanup(func() { c.Close() })
	return c
}

// WaitTCP waits until a TCP connection from inside host to addr (an IP
// literal and port) succeeds, and fails the test after 10s.
func (n *Net) WaitTCP(host, addr string) {
	n.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		err := n.Do(host, func() error {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("testnet: %s cannot connect to %s: %v", host, addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// host returns the named host. A wrong name is a bug in the test, reported
// with a panic so that it is seen from any goroutine.
func (n *Net) host(name string) *node {
	h, ok := n.hosts[name]
	if !ok {
		panic(fmt.Sprintf("testnet: no host %q (hosts: %s)", name, strings.Join(n.order, ", ")))
	}
	return h
}

func (n *Net) hostList() []*node {
	hs := make([]*node, len(n.order))
	for i, name := range n.order {
		hs[i] = n.hosts[name]
	}
	return hs
}

// waitLinks waits until host's loopback is up and its eth0 has carrier.
func (n *Net) waitLinks(host string) error {
	deadline := time.Now().Add(waitTimeout)
	for {
		var lo, eth net.Flags
		err := n.Do(host, func() error {
			ifs, err := net.Interfaces()
			for _, i := range ifs {
				switch i.Name {
				case "lo":
					lo = i.Flags
				case ifname:
					eth = i.Flags
				}
			}
			return err
		})
		switch {
		case err != nil:
			return err
		case lo&net.FlagUp != 0 && eth&net.FlagRunning != 0:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("%s: links not up after %v (lo %v, %s %v)", host, waitTimeout, lo, ifname, eth)
		}
		time.Sleep(time.Millisecond)
	}
}

// batch runs ip(8) commands, one a line, inside namespace ns ("" for the
// test's own namespace).
func (n *Net) batch(ns, cmds string) error {
	args := []string{"-force", "-batch", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	cmd := exec.Command(n.ip, args...)
	cmd.Stdin = strings.NewReader(cmds)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s (commands: %q)", strings.Join(args, " "), err, strings.TrimSpace(string(out)), cmds)
	}
	return nil
}

// cleanup stops the processes, then removes the namespaces.
func (n *Net) cleanup() { n.cleanOnce.Do(n.clean) }

func (n *Net) clean() {
	n.mu.Lock()
	n.closed = true
	procs := n.procs
	n.mu.Unlock()

	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() {
			if p.stopped.Load() {
				return // the test stopped it and had the error
			}
			if err := p.Stop(); err != nil {
				n.t.Logf("testnet: at cleanup: %v", err)
			}
		})
	}
	wg.Wait()
	if n.t.Failed() {
		for _, p := range procs {
			n.t.Logf("testnet: output of %s on %s:\n%s", p.name, p.host, p.Output())
		}
	}

	// Anything else still inside (a child that left its process group, a
	// process started with os/exec inside Do) would keep its namespace alive.
	var names []string
	inodes := map[uint64]bool{}
	for _, h := range n.hostList() {
		if h.fd != nil {
			var st unix.Stat_t
			if unix.Fstat(int(h.fd.Fd()), &st) == nil {
				inodes[st.Ino] = true
			}
			h.fd.Close()
		}
		names = append(names, h.ns)
	}
	for _, pid := range pidsIn(inodes) {
		n.t.Errorf("testnet: process %d was still running inside the test's hosts; killed", pid)
		_ = unix.Kill(pid, unix.SIGKILL)
	}

	var b strings.Builder
	for _, ns := range append(names, n.bridge) {
		if _, err := os.Stat("/run/netns/" + ns); err == nil {
			fmt.Fprintf(&b, "netns del %s\n", ns)
		}
	}
	if b.Len() > 0 {
		if err := n.batch("", b.String()); err != nil {
			n.t.Errorf("testnet: removing namespaces: %v", err)
		}
	}
}

// nth returns the i-th address of p.
func nth(p netip.Prefix, i int) netip.Addr {
	a := p.Masked().Addr().As4()
	a[3] += byte(i)
	return netip.AddrFrom4(a)
}

// lookIP finds ip(8) and checks that this process may use it to make
// namespaces.
func lookIP() (string, error) {
	if os.Geteuid() != 0 {
		return "", errors.New("making network namespaces needs root")
	}
	for _, p := range []string{"ip", "/usr/sbin/ip", "/sbin/ip"} {
		if path, err := exec.LookPath(p); err == nil {
			return path, nil
		}
	}
	return "", errors.New("ip(8) is not installed (package iproute2; run .ci/install-deps)")
}

// unavailable skips the test, or fails it under CI=true where the
// end-to-end tests must run.
func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("testnet: cannot make network namespaces: %v; under CI=true this is a failure", err)
	}
	t.Skipf("testnet: cannot make network namespaces: %v", err)
}
