package listen

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newRegistry(t *testing.T) *Registry {
	t.Helper()
	r := NewRegistry(slog.New(slog.DiscardHandler))
	t.Cleanup(func() { r.Close() })
	return r
}

func dial(t *testing.T, addr net.Addr) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// echoServer answers each line with prefix+line on goroutines it waits for.
type echoServer struct{ wg sync.WaitGroup }

func (e *echoServer) handler(prefix string) func(net.Conn) {
	return func(c net.Conn) {
		e.wg.Go(func() {
			defer c.Close()
			br := bufio.NewReader(c)
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if _, err := io.WriteString(c, prefix+line); err != nil {
					return
				}
			}
		})
	}
}

func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader, msg string) string {
	t.Helper()
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		t.Fatalf("write: %v", err)
	}
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return strings.TrimSuffix(line, "\n")
}

func TestListenReusesListener(t *testing.T) {
	r := newRegistry(t)
	a, err := r.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Errorf("second Listen bound a new listener")
	}
	if a.Key() != "127.0.0.1:0" || a.Addr().(*net.TCPAddr).Port == 0 {
		t.Errorf("Key %q Addr %v", a.Key(), a.Addr())
	}
}

func TestNoHandlerClosesConnections(t *testing.T) {
	r := newRegistry(t)
	l, err := r.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, l.Addr())
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("Read = %d, %v; want the connection closed", n, err)
	}
}

// TestSetHandlerSwap: new connections go to the new handler, while those
// accepted under the old one keep working.
func TestSetHandlerSwap(t *testing.T) {
	r := newRegistry(t)
	l, err := r.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var echo echoServer
	defer echo.wg.Wait()
	if old := l.SetHandler(echo.handler("A:")); old != nil {
		t.Errorf("first SetHandler returned a previous handler")
	}
	c1 := dial(t, l.Addr())
	defer c1.Close()
	br1 := bufio.NewReader(c1)
	if got := roundTrip(t, c1, br1, "one"); got != "A:one" {
		t.Fatalf("got %q", got)
	}
	if old := l.SetHandler(echo.handler("B:")); old == nil {
		t.Errorf("SetHandler did not return the previous handler")
	}
	c2 := dial(t, l.Addr())
	defer c2.Close()
	br2 := bufio.NewReader(c2)
	if got := roundTrip(t, c2, br2, "two"); got != "B:two" {
		t.Errorf("new connection: got %q, want B:two", got)
	}
	if got := roundTrip(t, c1, br1, "three"); got != "A:three" {
		t.Errorf("old connection after the swap: got %q, want A:three", got)
	}
	// The registry hands out the same listener, with the current handler.
	l2, _ := r.Listen("127.0.0.1:0")
	if l2 != l {
		t.Fatal("listener was rebound")
	}
	c1.Close()
	c2.Close()
}

func TestRetain(t *testing.T) {
	r := newRegistry(t)
	var echo echoServer
	defer echo.wg.Wait()
	keep, err := r.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	drop, err := r.Listen("[::1]:0")
	if err != nil {
		drop, err = r.Listen("127.0.0.2:0")
		if err != nil {
			t.Fatal(err)
		}
	}
	keep.SetHandler(echo.handler("keep:"))
	drop.SetHandler(echo.handler("drop:"))
	established := dial(t, drop.Addr())
	defer established.Close()
	brE := bufio.NewReader(established)
	roundTrip(t, established, brE, "x")

	r.Retain([]string{"127.0.0.1:0", "unknown:1"})

	if _, err := net.DialTimeout("tcp", drop.Addr().String(), time.Second); err == nil {
		t.Errorf("dropped listener still accepts")
	}
	c := dial(t, keep.Addr())
	defer c.Close()
	if got := roundTrip(t, c, bufio.NewReader(c), "y"); got != "keep:y" {
		t.Errorf("kept listener: got %q", got)
	}
	if got := roundTrip(t, established, brE, "z"); got != "drop:z" {
		t.Errorf("connection accepted before Retain: got %q", got)
	}
	// Binding the dropped key again makes a new listener.
	again, err := r.Listen(drop.Key())
	if err != nil {
		t.Fatal(err)
	}
	if again == drop {
		t.Errorf("Listen returned the closed listener")
	}
	c.Close()
	established.Close()
}

func TestRegistryClose(t *testing.T) {
	r := NewRegistry(nil)
	l, err := r.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		t.Errorf("listener still accepts after Close")
	}
	if _, err := r.Listen("127.0.0.1:0"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Listen after Close = %v, want net.ErrClosed", err)
	}
	r.Retain(nil) // no-op after Close
}

func TestListenBindError(t *testing.T) {
	r := newRegistry(t)
	l, err := r.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Same port under another key: the bind fails and nothing is registered.
	if _, err := r.Listen(l.Addr().String()); err == nil {
		t.Fatal("second bind of the same port succeeded")
	}
	if _, err := r.Listen("no-such-host.invalid:1"); err == nil {
		t.Fatal("bind to a bad address succeeded")
	}
}

// flakyListener fails Accept a few times with a temporary error.
type flakyListener struct {
	net.Listener
	mu    sync.Mutex
	fails int
}

func (f *flakyListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	if f.fails > 0 {
		f.fails--
		f.mu.Unlock()
		return nil, errors.New("accept: too many open files")
	}
	f.mu.Unlock()
	return f.Listener.Accept()
}

func TestAcceptRetries(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	var mu sync.Mutex
	l := &Listener{
		key:  "flaky",
		ln:   &flakyListener{Listener: ln, fails: 3},
		log:  slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil)),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	var echo echoServer
	l.SetHandler(echo.handler("ok:"))
	go l.serve()
	c := dial(t, l.Addr())
	if got := roundTrip(t, c, bufio.NewReader(c), "x"); got != "ok:x" {
		t.Errorf("got %q", got)
	}
	c.Close()
	l.close()
	echo.wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(logs.String(), "accept failed"); n != 3 {
		t.Errorf("%d accept errors logged, want 3:\n%s", n, logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
