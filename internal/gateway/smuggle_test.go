package gateway

//lint:file-ignore SA1019 golang.org/x/net/http2/h2c is the one h2c Upgrade server there is (net/http serves h2c by prior knowledge only): it is the backend this attack needs.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/labgate/labgate/internal/config"
)

// A client's Upgrade: h2c must not reach the backend. A backend that
// accepts it would turn the client's connection into an HTTP/2 tunnel to
// itself, in which any path reaches it and the client writes X-Real-IP
// itself. The backend here is the h2c server of golang.org/x/net made lax
// the way some servers are: it upgrades without HTTP2-Settings named in
// Connection (the gateway's hop-by-hop handling drops that token, which
// stops the strict server on its own).
func TestH2CUpgradeNotPassedOn(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		var upgrades atomic.Int32
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Upgrade") != "" || r.Header.Get("Http2-Settings") != "" {
				upgrades.Add(1)
			}
			fmt.Fprintf(w, "%s %s x-real-ip=%s", r.Proto, r.URL.Path, r.Header.Get("X-Real-Ip"))
		})
		strict := h2c.NewHandler(h, &http2.Server{})
		lax := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.EqualFold(r.Header.Get("Upgrade"), "h2c") {
				r.Header.Set("Connection", "Upgrade, HTTP2-Settings")
				if r.Header.Get("Http2-Settings") == "" {
					r.Header.Set("Http2-Settings", "")
				}
			}
			strict.ServeHTTP(w, r)
		})
		be := httptest.NewServer(lax)
		t.Cleanup(be.Close)
		_, gw := proxyTo(t, config.Limits{}, be.URL)

		c, err := net.Dial("tcp", strings.TrimPrefix(gw, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET /public HTTP/1.1\r\nHost: s.example.com\r\n"+
			"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
		br := bufio.NewReader(c)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode == http.StatusSwitchingProtocols {
			// The tunnel is open: show what a request in it does.
			tr := &http2.Transport{}
			cc, err := tr.NewClientConn(&bufferedConn{c, br})
			if err != nil {
				t.Fatalf("101 from the backend, then: %v", err)
			}
			res2, err := cc.RoundTrip(httptest.NewRequest("GET", "http://s.example.com/admin", nil))
			if err != nil {
				t.Fatalf("101 from the backend, then: %v", err)
			}
			b, _ := io.ReadAll(res2.Body)
			t.Fatalf("the backend switched the client's connection to h2c: the client speaks HTTP/2 to it directly (got %d %q)", res2.StatusCode, b)
		}
		b, _ := io.ReadAll(res.Body)
		if want := "HTTP/1.1 /public x-real-ip=127.0.0.1"; res.StatusCode != http.StatusOK || string(b) != want {
			t.Errorf("got %d %q, want 200 %q", res.StatusCode, b, want)
		}
		if n := upgrades.Load(); n != 0 {
			t.Errorf("the backend saw the upgrade offer %d times", n)
		}
	})
}

// A 101 to a request that asked for no upgrade is a broken answer: the
// client gets 502, and the connection, now in the backend's new protocol,
// never carries another client's request.
func TestH1UnaskedSwitchingProtocols(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		var tunneled atomic.Int64
		addr, accepts := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
			for {
				req, err := readRequest(br)
				if err != nil {
					return
				}
				if req.URL.Path == "/switch" {
					io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n")
					n, _ := io.Copy(io.Discard, br) // the new protocol
					tunneled.Add(n)
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
		})
		tg, gw := proxyTo(t, config.Limits{}, addr)
		c := newClient(t)
		c.Timeout = 5 * time.Second // a 101 passed on leaves the body open
		if res, body := get(t, c, "GET", gw+"/switch", nil); res.StatusCode != http.StatusBadGateway {
			t.Errorf("/switch: %d %q, want 502", res.StatusCode, body)
		}
		if res, body := get(t, c, "GET", gw+"/next", nil); res.StatusCode != http.StatusOK || body != "ok" {
			t.Errorf("/next: %d %q, want 200 ok", res.StatusCode, body)
		}
		if n := accepts.Load(); n != 2 {
			t.Errorf("backend accepted %d connections, want 2 (the switched one is not reused)", n)
		}
		tg.Close()
		if n := tunneled.Load(); n != 0 {
			t.Errorf("%d bytes went into the switched connection", n)
		}
	})
}

// Bytes a backend sends after a response, answering no request (here a
// body after the response to HEAD), must not be read as the answer to the
// next request on the pooled connection: that request may be another
// client's.
func TestH1UnsolicitedBytesNotReused(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		release, sent := make(chan struct{}), make(chan struct{})
		addr, _ := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
			for {
				req, err := readRequest(br)
				if err != nil {
					return
				}
				if req.Method == http.MethodHead {
					const planted = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nplanted"
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(planted))
					select {
					case <-release:
					case <-time.After(10 * time.Second):
					}
					io.WriteString(c, planted) // the body HEAD must not have
					close(sent)
					continue
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
		})
		tg, gw := proxyTo(t, config.Limits{}, addr)
		c := newClient(t)
		if res, _ := get(t, c, "HEAD", gw+"/file", nil); res.StatusCode != http.StatusOK {
			t.Fatalf("HEAD: %d", res.StatusCode)
		}
		if h1 := tg.services[0].backends[0].h1; h1 != nil {
			waitFor(t, "the connection to be idle", func() bool { return h1.idleCount() == 1 })
		}
		close(release)
		<-sent
		time.Sleep(10 * time.Millisecond) // loopback delivery
		if res, body := get(t, c, "GET", gw+"/next", nil); body != "ok" {
			t.Errorf("the next request got %d %q, want 200 ok", res.StatusCode, body)
		}
	})
}

// Forwarding headers spelled with underscores, and forwarding headers
// sent as trailers, do not reach the backend: CGI-style backends read
// X_Real_IP as X-Real-IP, and some merge trailers into headers.
func TestForwardedHeaderAliases(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		addr, _ := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
			for {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				var got []string
				for k, v := range req.Header {
					if strings.Contains(strings.ToLower(k), "real") || strings.Contains(strings.ToLower(k), "forwarded_for") {
						got = append(got, k+"="+strings.Join(v, ","))
					}
				}
				io.Copy(io.Discard, req.Body)
				for k, v := range req.Trailer {
					got = append(got, "trailer "+k+"="+strings.Join(v, ","))
				}
				body := strings.Join(got, ";")
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			}
		})
		_, gw := proxyTo(t, config.Limits{}, addr)
		c, err := net.Dial("tcp", strings.TrimPrefix(gw, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: s.example.com\r\nX_Real_IP: 203.0.113.66\r\nx_forwarded_for: 203.0.113.66\r\n"+
			"Trailer: X-Real-Ip, X-Kept\r\nTransfer-Encoding: chunked\r\n\r\n"+
			"1\r\na\r\n0\r\nX-Real-Ip: 203.0.113.67\r\nX-Forwarded-For: 203.0.113.67\r\nX-Kept: yes\r\n\r\n")
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		// Not even the name of a dropped trailer: ReverseProxy sends the
		// names a request declared, without their values.
		if strings.Contains(string(b), "203.0.113.") || strings.Contains(string(b), "trailer X-Real-Ip") ||
			strings.Contains(string(b), "trailer X-Forwarded-For") || !strings.Contains(string(b), "X-Real-Ip=127.0.0.1") {
			t.Errorf("backend got %q", b)
		}
	})
}

// bufferedConn reads what a bufio.Reader kept of c before the rest of c.
type bufferedConn struct {
	net.Conn
	br *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.br.Read(p) }
