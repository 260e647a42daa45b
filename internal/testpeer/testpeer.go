// Package testpeer starts real peers (HAProxy, nginx, …) for tests: it finds
// their binaries, skips the test when one is missing (fails it under CI=true,
// where a missing component is an error), runs them in their own session
// and stops them by PID when the test ends.
package testpeer

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Need returns the path of the binary name, or skips the test (fails it under CI=true).
func Need(t testing.TB, name string, alternatives ...string) string {
	t.Helper()
	for _, n := range append([]string{name}, alternatives...) {
		for _, p := range []string{n, "/usr/sbin/" + n, "/sbin/" + n} {
			if path, err := exec.LookPath(p); err == nil {
				return path
			}
		}
	}
	missing(t, name)
	return ""
}

// NeedTool is Need for a tool .ci/install-deps builds with go install (sops):
// on PATH, or in $LABGATE_TOOLS (default ~/.cache/labgate-tools).
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	dir := os.Getenv("LABGATE_TOOLS")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "labgate-tools")
	}
	p := filepath.Join(dir, name)
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return p
	}
	missing(t, name)
	return ""
}

// missing skips the test for want of name, or fails it under CI=true.
func missing(t testing.TB, name string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed (run .ci/install-deps); under CI=true a missing peer is a failure", name)
	}
	t.Skipf("%s is not installed (run .ci/install-deps)", name)
}

// Process is a running peer.
type Process struct {
	cmd *exec.Cmd
	out *Buffer
}

// Start runs a peer in its own session and stops it (by PID) at cleanup.
func Start(t testing.TB, path string, args ...string) *Process {
	t.Helper()
	p := &Process{cmd: exec.Command(path, args...), out: &Buffer{}}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	exited := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", path, p.out.String())
		}
	})
	return p
}

// Output is what the peer has printed so far.
func (p *Process) Output() string { return p.out.String() }

// WaitFor polls ok every 20ms until it holds, failing the test with what
// it waited for once patience runs out.
func WaitFor(t testing.TB, patience time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitPort waits until addr accepts TCP connections.
func WaitPort(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FreePort returns a TCP port on host that was free a moment ago, for peers
// whose config needs a fixed port.
func FreePort(t testing.TB, host string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// Buffer is an output or log destination that tests can read while others
// write to it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
