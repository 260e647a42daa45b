package listen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"
)

func TestPipe(t *testing.T) {
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80}
	p := NewPipe(addr)
	if p.Addr() != addr {
		t.Errorf("Addr = %v", p.Addr())
	}
	a, b := net.Pipe()
	defer b.Close()
	go func() {
		if !p.Deliver(a) {
			t.Error("Deliver to an open pipe failed")
		}
	}()
	got, err := p.Accept()
	if err != nil || got != a {
		t.Fatalf("Accept = %v, %v", got, err)
	}
	p.Close()
	p.Close()
	if _, err := p.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
	}
	if p.Deliver(a) {
		t.Error("Deliver after Close succeeded")
	}
	a.Close()
}

// generation is what a config generation runs on a listener: an HTTP
// server fed by a Pipe.
type generation struct {
	pipe *Pipe
	srv  *http.Server
	done chan error
}

func startGeneration(l *Listener, p *Policy, name string) *generation {
	g := &generation{
		pipe: NewPipe(l.Addr()),
		srv: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s", name, r.RemoteAddr)
		})},
		done: make(chan error, 1),
	}
	go func() { g.done <- g.srv.Serve(g.pipe) }()
	l.SetHandler(func(c net.Conn) {
		if c = p.Admit(c); c != nil && !g.pipe.Deliver(c) {
			c.Close()
		}
	})
	return g
}

func (g *generation) stop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-g.done; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve returned %v", err)
	}
}

func get(t *testing.T, c net.Conn, br *bufio.Reader) string {
	t.Helper()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: lab\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestGenerationSwap: one bound listener, two http.Servers one after the
// other behind a PROXY policy; a keep-alive connection of the first
// generation keeps being served by it until it is shut down.
func TestGenerationSwap(t *testing.T) {
	r := newRegistry(t)
	l, err := r.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, RequireProxy: true, HeaderTimeout: time.Second}

	gen1 := startGeneration(l, p, "gen1")
	old := dial(t, l.Addr())
	io.WriteString(old, "PROXY TCP4 192.0.2.1 192.0.2.2 1111 80\r\n")
	oldBR := bufio.NewReader(old)
	if got := get(t, old, oldBR); got != "gen1 192.0.2.1:1111" {
		t.Fatalf("gen1: %q", got)
	}

	gen2 := startGeneration(l, p, "gen2")
	fresh := dial(t, l.Addr())
	io.WriteString(fresh, "PROXY TCP6 2001:db8::5 2001:db8::1 2222 80\r\n")
	if got := get(t, fresh, bufio.NewReader(fresh)); got != "gen2 [2001:db8::5]:2222" {
		t.Errorf("new connection: %q, want gen2", got)
	}
	if got := get(t, old, oldBR); got != "gen1 192.0.2.1:1111" {
		t.Errorf("old keep-alive connection after the swap: %q, want gen1", got)
	}

	gen1.stop(t) // closes the idle old connection and gen1's pipe
	if _, err := oldBR.ReadByte(); err == nil {
		t.Errorf("old connection still open after gen1 shut down")
	}
	if gen1.pipe.Deliver(nil) {
		t.Errorf("gen1's pipe still takes connections")
	}
	if got := get(t, fresh, bufio.NewReader(fresh)); got != "gen2 [2001:db8::5]:2222" {
		t.Errorf("gen2 after gen1's shutdown: %q", got)
	}
	fresh.Close()
	gen2.stop(t)
	l.SetHandler(nil)
}
