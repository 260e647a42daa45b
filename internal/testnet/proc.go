package testnet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/labgate/labgate/internal/testpeer"
)

// Proc is a process running inside a host, started by [Net.Start].
type Proc struct {
	host, name string
	cmd        *exec.Cmd
	out        testpeer.Buffer
	done       chan struct{} // closed when the process has exited and been reaped
	err        error         // cmd.Wait's result, set before done is closed
	grace      time.Duration // between SIGTERM and SIGKILL

	stopOnce sync.Once
	stopped  atomic.Bool // Stop has been called
	stopErr  error
}

// Start runs name with args inside host (`ip netns exec`), in a session and
// process group of its own, with stdout and stderr captured together. The
// process is stopped when the test ends (see [Proc.Stop]); when the test has
// failed, its output is logged. Start returns once the process has started,
// not once it is ready: wait for that with [Net.WaitTCP].
func (n *Net) Start(host, name string, args ...string) *Proc {
	n.t.Helper()
	h := n.host(host)
	p := &Proc{
		host:  host,
		name:  name,
		cmd:   exec.Command(n.ip, append([]string{"netns", "exec", h.ns, name}, args...)...),
		done:  make(chan struct{}),
		grace: stopGrace,
	}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}

	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		n.t.Fatalf("testnet: Start(%s, %s) after the test ended", host, name)
	}
	if err := p.cmd.Start(); err != nil {
		n.t.Fatalf("testnet: starting %s in %s: %v", name, host, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	n.procs = append(n.procs, p)
	return p
}

// PID is the process's ID (`ip netns exec` execs the command, so it is the
// command's own); it is also the ID of its process group.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Output is what the process has written to stdout and stderr so far.
func (p *Proc) Output() string { return p.out.String() }

// Signal sends sig to the process (not to its group), for example SIGHUP.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit, and returns nil if it exited with
// status 0.
func (p *Proc) Wait() error {
	<-p.done
	if p.err != nil {
		return fmt.Errorf("%s on %s: %w", p.name, p.host, p.err)
	}
	return nil
}

// Stop stops the process: SIGTERM to its process group, then SIGKILL if it
// has not exited 5s later. It returns nil when the process exited with status
// 0 or because of the SIGTERM, and an error when it had already failed, failed
// on its way out, or had to be killed. Calling Stop again returns the same.
func (p *Proc) Stop() error {
	p.stopped.Store(true)
	p.stopOnce.Do(func() { p.stopErr = p.stop() })
	return p.stopErr
}

func (p *Proc) stop() error {
	select {
	case <-p.done:
		return p.Wait()
	default:
	}
	// Signalled while not yet reaped (done is open), so the PID is still ours.
	_ = unix.Kill(-p.PID(), unix.SIGTERM)
	t := time.NewTimer(p.grace)
	defer t.Stop()
	select {
	case <-p.done:
		var ee *exec.ExitError
		if errors.As(p.err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
				return nil
			}
		}
		return p.Wait()
	case <-t.C:
		_ = unix.Kill(-p.PID(), unix.SIGKILL)
		<-p.done
		return fmt.Errorf("%s on %s did not exit within %v of SIGTERM; killed", p.name, p.host, p.grace)
	}
}

// Run runs name with args inside host to completion and returns its stdout
// and stderr together. It gives up after 30s, killing the process group.
func (n *Net) Run(host, name string, args ...string) (string, error) {
	h := n.host(host)
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.ip, append([]string{"netns", "exec", h.ns, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (gave up after %v)", err, runTimeout)
	}
	if err != nil {
		return string(out), fmt.Errorf("%s on %s: %w", name, host, err)
	}
	return string(out), nil
}
