package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/config"
)

// A request body that stops arriving fails after limits.idle_timeout: the
// client gets 400 and its connection closes, the backend's request ends,
// and nothing counts against the backend. A body that keeps coming, however
// slowly in total, goes through.
func TestRequestBodyIdleTimeout(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		got := make(chan string, 4)
		be := startCounting(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				got <- "error"
				return
			}
			got <- string(b)
			io.WriteString(w, "got "+string(b))
		}))
		tg, gw := proxyTo(t, config.Limits{IdleTimeout: time.Second}, be.URL)
		addr := strings.TrimPrefix(gw, "http://")

		for _, head := range []string{
			"POST / HTTP/1.1\r\nHost: s.example.com\r\nContent-Length: 10\r\n\r\nabc",
			"POST / HTTP/1.1\r\nHost: s.example.com\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
		} {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(20 * time.Second))
			io.WriteString(c, head) // and then nothing
			b, err := io.ReadAll(c)
			c.Close()
			if err != nil {
				t.Fatalf("%q: the gateway held the stalled request: %v", head, err)
			}
			if !strings.HasPrefix(string(b), "HTTP/1.1 400") {
				t.Errorf("%q: got %.40q, want 400 and the connection closed", head, b)
			}
			// The backend got the request broken off, or (when the
			// gateway had not sent it yet) not at all.
			select {
			case g := <-got:
				if g != "error" {
					t.Errorf("backend read the body as %q, want it broken off", g)
				}
			default:
			}
		}

		// Slow in total (longer than the timeout), but never silent for long.
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: s.example.com\r\nContent-Length: 12\r\n\r\n")
		for _, s := range []string{"ab", "cd", "ef", "gh", "ij", "kl"} {
			time.Sleep(300 * time.Millisecond)
			io.WriteString(c, s)
		}
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 || string(b) != "got abcdefghijkl" {
			t.Errorf("slow steady upload: %d %q", res.StatusCode, b)
		}
		for _, reason := range []string{"timeout", "transport", "protocol"} {
			if m := tg.metric(t, `labgate_http_backend_errors_total{backend="`+be.URL+`",reason="`+reason+`"`); strings.HasSuffix(m, " 1") || strings.HasSuffix(m, " 2") {
				t.Errorf("the client's stalled body counted against the backend: %s", m)
			}
		}
		if b := tg.services[0].backends[0]; !b.healthy() {
			t.Error("the client's stalled body took the backend out")
		}
	})
}

// The body's idle timeout ends with the body: a backend that takes longer
// than limits.idle_timeout to answer an upload it has read whole (a cloud
// assembling chunks, a photo library indexing a file) still answers. A
// deadline left armed would make the server's watch for a closed
// connection cancel the request.
func TestRequestBodyIdleTimeoutEndsWithBody(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		be := startCounting(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				return
			}
			select {
			case <-time.After(1200 * time.Millisecond): // four idle timeouts
			case <-r.Context().Done():
				return
			}
			io.WriteString(w, "stored "+string(b))
		}))
		_, gw := proxyTo(t, config.Limits{IdleTimeout: 300 * time.Millisecond}, be.URL)
		c, err := net.Dial("tcp", strings.TrimPrefix(gw, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: s.example.com\r\nContent-Length: 5\r\n\r\nphoto")
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 || string(b) != "stored photo" {
			t.Errorf("got %d %q, want 200 \"stored photo\"", res.StatusCode, b)
		}
	})
}
