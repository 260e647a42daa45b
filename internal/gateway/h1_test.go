package gateway

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/config"
)

// testReverseProxy makes newTestGateway turn the lean path off.
var testReverseProxy bool

// TestReverseProxyPath runs the proxy behaviour tests again with every
// request through httputil.ReverseProxy, so that both paths stay tested.
func TestReverseProxyPath(t *testing.T) {
	testReverseProxy = true
	t.Cleanup(func() { testReverseProxy = false })
	for _, tt := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"Routing", TestRouting}, {"ClassEnforcement", TestClassEnforcement}, {"ForwardedHeaders", TestForwardedHeaders},
		{"Failover", TestFailover}, {"Streaming", TestStreaming}, {"LargeUpload", TestLargeUpload},
		{"ErrorPages", TestErrorPages}, {"HTTPHandler", TestHTTPHandler}, {"HTTPSBackend", TestHTTPSBackend},
	} {
		t.Run(tt.name, tt.f)
	}
}

// bothPaths runs f on the lean path and on the ReverseProxy path.
func bothPaths(t *testing.T, f func(t *testing.T)) {
	t.Run("lean", f)
	t.Run("reverseproxy", func(t *testing.T) {
		testReverseProxy = true
		defer func() { testReverseProxy = false }()
		f(t)
	})
}

// countingBackend is a real backend that counts the connections it accepted.
type countingBackend struct {
	*httptest.Server
	accepts atomic.Int32
}

func startCounting(t *testing.T, h http.Handler) *countingBackend {
	cb := &countingBackend{Server: httptest.NewUnstartedServer(h)}
	cb.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			cb.accepts.Add(1)
		}
	}
	cb.Start()
	t.Cleanup(cb.Close)
	return cb
}

// proxyTo is a gateway serving s.example.com from backendURL, and its address.
func proxyTo(t *testing.T, lim config.Limits, backendURL string) (*testGateway, string) {
	tg := newTestGateway(t, lim, &config.Service{Name: "s", Hosts: []string{"s.example.com"}, Backends: []*url.URL{mustURL(t, backendURL)}})
	return tg, serveHandler(t, tg.Handler(config.Private)).URL
}

// rawBackend is a hand-written TCP backend: serve runs for each connection.
func rawBackend(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) (addr string, accepts *atomic.Int32) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepts = new(atomic.Int32)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				serve(c, bufio.NewReader(c))
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "http://" + ln.Addr().String(), accepts
}

// readRequest reads one request and its body from br.
func readRequest(br *bufio.Reader) (*http.Request, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, req.Body)
	return req, err
}

func get(t *testing.T, c *http.Client, method, u string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "s.example.com"
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

func TestH1ConnectionReuse(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		be := startCounting(t, echoBackend("b"))
		_, gw := proxyTo(t, config.Limits{}, be.URL)
		c := newClient(t)
		for range 100 {
			if res, body := get(t, c, "GET", gw+"/x", nil); res.StatusCode != 200 || !strings.Contains(body, `"Backend":"b"`) {
				t.Fatalf("%d %s", res.StatusCode, body)
			}
		}
		// POSTs with bodies take the pooled connection too.
		for range 10 {
			if res, _ := get(t, c, "POST", gw+"/x", strings.NewReader("hello")); res.StatusCode != 200 {
				t.Fatalf("POST: %d", res.StatusCode)
			}
		}
		if n := be.accepts.Load(); n != 1 {
			t.Errorf("the backend accepted %d connections for 110 sequential requests, want 1", n)
		}
	})
}

// The backend closes each connection after answering, without saying so
// (as when its keep-alive timeout runs out between two requests): no client
// sees an error.
func TestH1BackendClosesIdleConnections(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		addr, accepts := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
			req, err := readRequest(br)
			if err != nil {
				return
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.Method), req.Method)
		})
		_, gw := proxyTo(t, config.Limits{}, addr)
		c := newClient(t)
		const n = 20
		for i := range n {
			method := "GET"
			var body io.Reader
			if i%2 == 1 {
				method, body = "POST", strings.NewReader("data")
			}
			res, got := get(t, c, method, gw+"/", body)
			if res.StatusCode != 200 || got != method {
				t.Fatalf("request %d: %d %q", i, res.StatusCode, got)
			}
			time.Sleep(5 * time.Millisecond) // the FIN arrives
		}
		if a := accepts.Load(); a != n {
			t.Errorf("%d connections for %d requests", a, n)
		}
	})
}

// The same with net/http's own idle timeout, and the race left open: the
// backend closes right after the answer, the next GET is sent at once.
func TestH1IdleTimeoutRace(t *testing.T) {
	addr, _ := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := readRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		time.Sleep(time.Millisecond)
	})
	_, gw := proxyTo(t, config.Limits{}, addr)
	c := newClient(t)
	for i := range 50 {
		if res, got := get(t, c, "GET", gw+"/", nil); res.StatusCode != 200 || got != "ok" {
			t.Fatalf("request %d: %d %q", i, res.StatusCode, got)
		}
	}
}

func TestH1ChunkedUploadWithTrailers(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		be := startCounting(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprintf(w, "%d %x te=%v cl=%d trailer=%q", n, h.Sum(nil), r.TransferEncoding, r.ContentLength, r.Trailer.Get("X-Sum"))
		}))
		_, gw := proxyTo(t, config.Limits{}, be.URL)
		const size = 1<<20 + 17
		want := sha256.New()
		io.Copy(want, &pattern{n: size})
		req, _ := http.NewRequest("PUT", gw+"/up", io.MultiReader(&pattern{n: size}))
		req.Host = "s.example.com"
		req.ContentLength = -1
		req.Trailer = http.Header{"X-Sum": nil}
		req.Body = &trailerSetter{r: req.Body, set: func() { req.Trailer.Set("X-Sum", "abc") }}
		res, err := newClient(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		trailer := "abc"
		if testReverseProxy {
			trailer = "" // ReverseProxy clones the trailer map before the body is read
		}
		wantBody := fmt.Sprintf("%d %x te=[chunked] cl=-1 trailer=%q", size, want.Sum(nil), trailer)
		if string(body) != wantBody {
			t.Fatalf("backend got\n%s\nwant\n%s", body, wantBody)
		}
	})
}

// trailerSetter sets the request trailers when the body is read to its end.
type trailerSetter struct {
	r   io.ReadCloser
	set func()
}

func (ts *trailerSetter) Read(p []byte) (int, error) {
	n, err := ts.r.Read(p)
	if err == io.EOF {
		ts.set()
	}
	return n, err
}
func (ts *trailerSetter) Close() error { return ts.r.Close() }

func TestH1ResponseTrailers(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		be := startCounting(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Checksum")
			io.WriteString(w, "body")
			w.(http.Flusher).Flush()
			w.Header().Set("X-Checksum", "42")
			w.Header().Set(http.TrailerPrefix+"X-Late", "late")
		}))
		_, gw := proxyTo(t, config.Limits{}, be.URL)
		res, body := get(t, newClient(t), "GET", gw+"/", nil)
		if body != "body" || res.Trailer.Get("X-Checksum") != "42" || res.Trailer.Get("X-Late") != "late" {
			t.Fatalf("body %q trailers %v", body, res.Trailer)
		}
	})
}

func TestH1NoBodyResponses(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		be := startCounting(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/204":
				w.WriteHeader(204)
			case "/304":
				w.Header().Set("Etag", `"x"`)
				w.WriteHeader(304)
			default:
				w.Header().Set("Content-Length", "5")
				io.WriteString(w, "hello")
			}
		}))
		_, gw := proxyTo(t, config.Limits{}, be.URL)
		c := newClient(t)
		for _, tt := range []struct {
			method, path string
			status       int
			length       string
		}{
			{"HEAD", "/", 200, "5"}, {"GET", "/204", 204, ""}, {"GET", "/304", 304, ""}, {"GET", "/", 200, "5"},
			{"HEAD", "/", 200, "5"}, {"GET", "/204", 204, ""}, {"GET", "/304", 304, ""},
		} {
			res, body := get(t, c, tt.method, gw+tt.path, nil)
			if res.StatusCode != tt.status || body != "" && tt.method != "GET" || res.Header.Get("Content-Length") != tt.length {
				t.Fatalf("%s %s: %d %q length %q", tt.method, tt.path, res.StatusCode, body, res.Header.Get("Content-Length"))
			}
		}
		if n := be.accepts.Load(); n != 1 {
			t.Errorf("%d backend connections, want 1", n)
		}
	})
}

// 1xx informational responses are passed on as ReverseProxy does; the
// final response follows on the same connection.
func TestH1EarlyHints(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		be := startCounting(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(103)
			w.Header().Del("Link")
			io.WriteString(w, "final")
		}))
		_, gw := proxyTo(t, config.Limits{}, be.URL)
		c := newClient(t)
		for range 3 {
			var hints []string
			trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				hints = append(hints, fmt.Sprint(code, " ", h.Get("Link")))
				return nil
			}}
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", gw+"/", nil)
			req.Host = "s.example.com"
			res, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || string(body) != "final" || res.Header.Get("Link") != "" {
				t.Fatalf("%d %q %v", res.StatusCode, body, res.Header)
			}
			if len(hints) != 1 || hints[0] != "103 </style.css>; rel=preload" {
				t.Fatalf("1xx seen by the client: %q", hints)
			}
		}
		if n := be.accepts.Load(); n != 1 {
			t.Errorf("%d backend connections, want 1", n)
		}
	})
}

func TestH1BackendConnectionClose(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		be := startCounting(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		}))
		_, gw := proxyTo(t, config.Limits{}, be.URL)
		c := newClient(t)
		for range 3 {
			res, body := get(t, c, "GET", gw+"/", nil)
			if res.StatusCode != 200 || body != "bye" || res.Close {
				t.Fatalf("%d %q close=%v", res.StatusCode, body, res.Close)
			}
		}
		if n := be.accepts.Load(); n != 3 {
			t.Errorf("%d backend connections for 3 requests answered with Connection: close", n)
		}
	})
}

// A body without length ends when the backend closes: it streams, and the
// connection is not reused.
func TestH1CloseDelimitedBody(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		release := make(chan struct{}, 1)
		addr, accepts := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
			if _, err := readRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst\n")
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
			io.WriteString(c, "last\n")
		})
		_, gw := proxyTo(t, config.Limits{}, addr)
		c := newClient(t)
		for range 2 {
			req, _ := http.NewRequest("GET", gw+"/", nil)
			req.Host = "s.example.com"
			res, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			expectStreamed(t, res.Body, release)
			res.Body.Close()
		}
		if n := accepts.Load(); n != 2 {
			t.Errorf("%d backend connections, want 2", n)
		}
	})
}

// A client that goes away mid-response takes the upstream connection with
// it: the backend sees its request end.
func TestH1ClientCancelClosesUpstream(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		ended := make(chan struct{})
		be := startCounting(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "first\n")
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				close(ended)
			case <-time.After(10 * time.Second):
			}
		}))
		tg, gw := proxyTo(t, config.Limits{}, be.URL)
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", gw+"/", nil)
		req.Host = "s.example.com"
		res, err := newClient(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		l, _ := bufio.NewReader(res.Body).ReadString('\n')
		if l != "first\n" {
			t.Fatalf("first line %q", l)
		}
		cancel()
		res.Body.Close()
		select {
		case <-ended:
		case <-time.After(5 * time.Second):
			t.Fatal("the backend did not see the client go")
		}
		if tg.Gateway.services[0].backends[0].h1 != nil {
			waitFor(t, "no idle connection", func() bool { return tg.Gateway.services[0].backends[0].h1.idleCount() == 0 })
		}
	})
}

// A client that goes away while the backend has not answered yet: the
// gateway does not wait for the answer.
func TestH1ClientCancelBeforeHeaders(t *testing.T) {
	ended := make(chan struct{})
	be := startCounting(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		close(ended)
	}))
	_, gw := proxyTo(t, config.Limits{}, be.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", gw+"/", nil)
	req.Host = "s.example.com"
	if _, err := newClient(t).Do(req); err == nil {
		t.Fatal("no error")
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend did not see the client go")
	}
}

func TestH1HeaderTimeout(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		be := startCounting(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
				return
			}
			// Slow body after quick headers: the header timeout no longer applies.
			io.WriteString(w, "a")
			w.(http.Flusher).Flush()
			time.Sleep(300 * time.Millisecond)
			io.WriteString(w, "b")
		}))
		tg, gw := proxyTo(t, config.Limits{BackendHeaderTimeout: 100 * time.Millisecond}, be.URL)
		c := newClient(t)
		if res, _ := get(t, c, "GET", gw+"/slow", nil); res.StatusCode != 504 {
			t.Fatalf("status %d, want 504", res.StatusCode)
		}
		if res, body := get(t, c, "GET", gw+"/body", nil); res.StatusCode != 200 || body != "ab" {
			t.Fatalf("%d %q", res.StatusCode, body)
		}
		if m := `labgate_http_backend_errors_total{backend="` + be.URL + `",reason="timeout",service="s"}`; tg.metric(t, m) != m+" 1" {
			t.Errorf("metric %q", tg.metric(t, m))
		}
	})
}

func TestH1HopByHopHeaders(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		be := startCounting(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var got []string
			for _, k := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "X-Secret", "X-Other", "Te", "Expect", "X-Kept"} {
				if v, ok := r.Header[k]; ok {
					got = append(got, k+"="+strings.Join(v, ","))
				}
			}
			h := w.Header()
			h.Set("Connection", "X-Resp-Secret, keep-alive")
			h.Set("X-Resp-Secret", "hop")
			h.Set("Keep-Alive", "timeout=5")
			h.Set("Proxy-Connection", "keep-alive")
			h.Set("Proxy-Authenticate", "Basic")
			h.Set("Upgrade", "h2c")
			h.Set("X-Resp-Kept", "yes")
			io.WriteString(w, strings.Join(got, ";"))
		}))
		_, gw := proxyTo(t, config.Limits{}, be.URL)
		hdr := http.Header{
			"Connection":          {"X-Secret, keep-alive", "x-other"},
			"Keep-Alive":          {"timeout=5"},
			"Proxy-Connection":    {"keep-alive"},
			"Proxy-Authorization": {"Basic eA=="},
			"X-Secret":            {"hop"},
			"X-Other":             {"hop"},
			"Te":                  {"trailers, deflate"},
			"X-Kept":              {"end-to-end"},
		}
		r := do(t, newClient(t), "GET", gw+"/", "s.example.com", hdr, nil)
		if want := "Te=trailers;X-Kept=end-to-end"; r.Body != want {
			t.Errorf("backend got %q, want %q", r.Body, want)
		}
		for _, k := range []string{"Connection", "X-Resp-Secret", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Upgrade"} {
			if v, ok := r.Header[k]; ok {
				t.Errorf("client got %s: %q", k, v)
			}
		}
		if r.Header.Get("X-Resp-Kept") != "yes" {
			t.Errorf("end-to-end response header lost: %v", r.Header)
		}
	})
}

// Query strings Go would not parse as the backend does are re-encoded on
// both paths; a plain one passes as sent, escapes included.
func TestH1RequestURI(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		addr, _ := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
			for {
				req, err := readRequest(br)
				if err != nil {
					return
				}
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.RequestURI), req.RequestURI)
			}
		})
		_, gw := proxyTo(t, config.Limits{}, addr)
		srvAddr := strings.TrimPrefix(gw, "http://")
		for _, tt := range []struct{ sent, want string }{
			{"/a%2Fb/c?x=1&y=%20z", "/a%2Fb/c?x=1&y=%20z"},
			{"/p?a=1;b=2", "/p"}, {"/p?a=1&b=2;c", "/p?a=1"},
			{"/p?", "/p?"},
		} {
			status, body := rawRequest(t, srvAddr, "GET "+tt.sent+" HTTP/1.1\r\nHost: s.example.com\r\nConnection: close\r\n\r\n")
			if status != 200 || body != tt.want {
				t.Errorf("%s: %d %q, want the backend to see %q", tt.sent, status, body, tt.want)
			}
		}
	})
}

// A backend that refuses an upload early and closes: the client gets its
// answer, not a 502.
func TestH1EarlyResponseToUpload(t *testing.T) {
	bothPaths(t, func(t *testing.T) {
		be := startCounting(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
		}))
		_, gw := proxyTo(t, config.Limits{}, be.URL)
		req, _ := http.NewRequest("PUT", gw+"/", &pattern{n: 64 << 20})
		req.Host = "s.example.com"
		req.ContentLength = 64 << 20
		res, err := newClient(t).Do(req)
		if err != nil {
			t.Logf("client error (the gateway may close while the upload is sent): %v", err)
			return
		}
		res.Body.Close()
		if res.StatusCode != 413 {
			t.Fatalf("status %d, want 413", res.StatusCode)
		}
	})
}

// Dial errors go through the same failover as on the ReverseProxy path: a
// request to a dead backend is retried on the other one.
func TestH1DialErrorFailover(t *testing.T) {
	a := startBackend(t, "a")
	dead := closedPort(t)
	tg := newTestGateway(t, config.Limits{}, &config.Service{
		Name: "s", Hosts: []string{"s.example.com"},
		Backends: []*url.URL{mustURL(t, "http://"+dead), mustURL(t, a.URL)},
	})
	gw := serveHandler(t, tg.Handler(config.Private)).URL
	c := newClient(t)
	for range 4 {
		r := do(t, c, "GET", gw+"/", "s.example.com", nil, nil)
		if backendOf(t, r) != "a" {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	}
	m := `labgate_http_backend_errors_total{backend="http://` + dead + `",reason="dial",service="s"}`
	if got := tg.metric(t, m); got != m+" 1" {
		t.Errorf("metric %q", got)
	}
}

func TestH1PoolReap(t *testing.T) {
	be := startCounting(t, echoBackend("b"))
	tg, gw := proxyTo(t, config.Limits{}, be.URL)
	get(t, newClient(t), "GET", gw+"/", nil)
	p := tg.Gateway.services[0].backends[0].h1
	if p.idleCount() != 1 {
		t.Fatalf("%d idle", p.idleCount())
	}
	p.reap(time.Now())
	if p.idleCount() != 1 {
		t.Fatalf("reaped a fresh connection")
	}
	p.reap(time.Now().Add(h1IdleTimeout + time.Second))
	if p.idleCount() != 0 {
		t.Fatalf("%d idle after the timeout", p.idleCount())
	}
	tg.Close()
	get(t, newClient(t), "GET", gw+"/", nil) // still served; the connection is closed after
	if p.idleCount() != 0 {
		t.Fatalf("%d idle after Close", p.idleCount())
	}
}
