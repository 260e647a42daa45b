package gateway

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/testpeer"
)

// restartable is a backend that can be killed and started again on the same address.
type restartable struct {
	t    *testing.T
	name string
	addr string
	mu   sync.Mutex
	srv  *http.Server
	done chan struct{}
}

func startRestartable(t *testing.T, name string) *restartable {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &restartable{t: t, name: name, addr: ln.Addr().String()}
	b.serve(ln)
	t.Cleanup(b.kill)
	return b
}

func (b *restartable) serve(ln net.Listener) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.srv = &http.Server{Handler: echoBackend(b.name)}
	b.done = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		_ = srv.Serve(ln)
	}(b.srv, b.done)
}

func (b *restartable) kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil {
		b.srv.Close()
		<-b.done
		b.srv = nil
	}
}

func (b *restartable) restart() {
	ln, err := net.Listen("tcp", b.addr)
	if err != nil {
		b.t.Fatalf("listening again on %s: %v", b.addr, err)
	}
	b.serve(ln)
}

// runGateway runs g's health checks until the test ends.
func runGateway(t *testing.T, g *Gateway) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFailover(t *testing.T) {
	a := startBackend(t, "a")
	b := startRestartable(t, "b")
	tg := newTestGateway(t, config.Limits{}, &config.Service{
		Name: "s", Hosts: []string{"s.example.com"}, Expose: config.Public,
		Backends: []*url.URL{mustURL(t, a.URL), mustURL(t, "http://"+b.addr)},
		Health:   &config.Health{Path: "/healthz", Interval: 50 * time.Millisecond, Timeout: time.Second},
	})
	srv := serveHandler(t, tg.Handler(config.Public))
	c := newClient(t)
	upMetric := `labgate_backend_up{backend="http://` + b.addr + `",service="s"}`
	count := func(n int) map[string]int {
		t.Helper()
		got := map[string]int{}
		for range n {
			r := do(t, c, "GET", srv.URL+"/", "s.example.com", nil, nil)
			if r.Status != http.StatusOK {
				t.Fatalf("request failed: %d %s", r.Status, r.Body)
			}
			got[backendOf(t, r)]++
		}
		return got
	}
	if diff := cmp.Diff(map[string]int{"a": 10, "b": 10}, count(20)); diff != "" {
		t.Fatalf("round robin (-want +got):\n%s", diff)
	}

	// Killed without an active check running: the first request that finds
	// it dead marks it down and is retried on a; no request fails.
	b.kill()
	if diff := cmp.Diff(map[string]int{"a": 30}, count(30)); diff != "" {
		t.Fatalf("after kill (-want +got):\n%s", diff)
	}
	if got := tg.metric(t, upMetric); got != upMetric+" 0" {
		t.Fatalf("metric: %q, want down", got)
	}
	if !strings.Contains(tg.log.String(), "retrying on another backend") || !strings.Contains(tg.log.String(), "backend down") {
		t.Errorf("no log of the transition:\n%s", tg.log)
	}
	// A POST with a body cannot be retried once sent, but the backend is
	// already out of rotation, so it goes to a.
	if r := do(t, c, "POST", srv.URL+"/", "s.example.com", nil, strings.NewReader("body")); r.Status != 200 {
		t.Fatalf("POST: %d", r.Status)
	}

	// The active check brings it back once it listens again.
	runGateway(t, tg.Gateway)
	b.restart()
	waitFor(t, "b up", func() bool { return tg.metric(t, upMetric) == upMetric+" 1" })
	if diff := cmp.Diff(map[string]int{"a": 10, "b": 10}, count(20)); diff != "" {
		t.Fatalf("after restart (-want +got):\n%s", diff)
	}
	if n := strings.Count(tg.log.String(), "backend down"); n != 1 {
		t.Errorf("%d down transitions logged, want 1:\n%s", n, tg.log)
	}
	// The active check takes it down again, without a request.
	b.kill()
	waitFor(t, "b down", func() bool { return tg.metric(t, upMetric) == upMetric+" 0" })
	if diff := cmp.Diff(map[string]int{"a": 10}, count(10)); diff != "" {
		t.Fatalf("after second kill (-want +got):\n%s", diff)
	}
}

func TestWebsocket(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			reply := append([]byte(r.Header.Get("X-Forwarded-For")+" says "), msg...)
			if err := c.Write(r.Context(), typ, reply); err != nil {
				return
			}
		}
	}))
	t.Cleanup(be.Close)
	tg := newTestGateway(t, config.Limits{}, &config.Service{Name: "ws", Hosts: []string{"ws.example.com"}, Backends: []*url.URL{mustURL(t, be.URL)}})
	srv := serveHandler(t, tg.Handler(config.Private))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, res, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/socket", &websocket.DialOptions{
		Host:       "ws.example.com",
		HTTPHeader: http.Header{"X-Forwarded-For": {"6.6.6.6"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", res.StatusCode)
	}
	for i := range 3 {
		msg := "hello " + strconv.Itoa(i)
		if err := conn.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := conn.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := "127.0.0.1 says " + msg; string(got) != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	conn.Close(websocket.StatusNormalClosure, "")
}

func TestStreaming(t *testing.T) {
	release := make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", r.URL.Query().Get("type"))
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		io.WriteString(w, "last\n")
	}))
	t.Cleanup(be.Close)
	tg := newTestGateway(t, config.Limits{}, &config.Service{Name: "s", Hosts: []string{"s.example.com"}, Backends: []*url.URL{mustURL(t, be.URL)}})
	srv := serveHandler(t, tg.Handler(config.Private))
	for _, typ := range []string{"text/plain", "text/event-stream"} {
		t.Run(typ, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+"/?type="+url.QueryEscape(typ), nil)
			req.Host = "s.example.com"
			res, err := newClient(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			expectStreamed(t, res.Body, release)
		})
	}
}

// expectStreamed reads "first\n" from body before letting the backend send
// "last\n" (through release), so it fails when the proxy buffers the response.
func expectStreamed(t *testing.T, body io.Reader, release chan<- struct{}) {
	t.Helper()
	br := bufio.NewReader(body)
	first := make(chan string, 1)
	go func() {
		l, _ := br.ReadString('\n')
		first <- l
	}()
	select {
	case l := <-first:
		if l != "first\n" {
			t.Fatalf("first chunk %q", l)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the first chunk did not arrive before the last was sent: the proxy buffers")
	}
	release <- struct{}{}
	rest, err := io.ReadAll(br)
	if string(rest) != "last\n" || err != nil {
		t.Fatalf("rest %q, %v", rest, err)
	}
}

// pattern generates n deterministic bytes without holding them.
type pattern struct{ i, n int64 }

func (p *pattern) Read(b []byte) (int, error) {
	if p.i >= p.n {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n-p.i {
		b = b[:p.n-p.i]
	}
	for k := range b {
		x := p.i + int64(k)
		b[k] = byte(x ^ x>>8 ^ x>>16)
	}
	p.i += int64(len(b))
	return len(b), nil
}

func TestLargeUpload(t *testing.T) {
	const size = 64 << 20
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	}))
	t.Cleanup(be.Close)
	tg := newTestGateway(t, config.Limits{}, &config.Service{Name: "up", Hosts: []string{"up.example.com"}, Backends: []*url.URL{mustURL(t, be.URL)}})
	srv := serveHandler(t, tg.Handler(config.Private))

	want := sha256.New()
	io.Copy(want, &pattern{n: size})
	wantBody := fmt.Sprintf("%d %s", size, hex.EncodeToString(want.Sum(nil)))

	for _, tt := range []struct {
		name   string
		length int64
	}{{"content-length", size}, {"chunked", -1}} {
		t.Run(tt.name, func(t *testing.T) {
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			var peak atomic.Uint64
			stop := make(chan struct{})
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				var ms runtime.MemStats
				for {
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
					runtime.ReadMemStats(&ms)
					if ms.HeapAlloc > peak.Load() {
						peak.Store(ms.HeapAlloc)
					}
				}
			}()
			req, _ := http.NewRequest("PUT", srv.URL+"/upload", &pattern{n: size})
			req.Host = "up.example.com"
			req.ContentLength = tt.length
			res, err := newClient(t).Do(req)
			close(stop)
			<-sampled
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if string(body) != wantBody {
				t.Fatalf("backend got %q, want %q", body, wantBody)
			}
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			growth := int64(peak.Load()) - int64(before.HeapAlloc)
			allocated := after.TotalAlloc - before.TotalAlloc
			t.Logf("heap growth at peak %d KiB, allocated %d KiB for a %d MiB upload", growth>>10, allocated>>10, size>>20)
			if growth > 16<<20 || allocated > 16<<20 {
				t.Errorf("the upload was buffered: heap grew by %d bytes, %d bytes allocated", growth, allocated)
			}
		})
	}
}

func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestErrorPages(t *testing.T) {
	dead := closedPort(t)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(slow.Close)
	tg := newTestGateway(t, config.Limits{BackendHeaderTimeout: 200 * time.Millisecond},
		&config.Service{Name: "dead", Hosts: []string{"dead.example.com"}, Backends: []*url.URL{mustURL(t, "http://"+dead)}},
		&config.Service{Name: "slow", Hosts: []string{"slow.example.com"}, Backends: []*url.URL{mustURL(t, slow.URL)}},
		&config.Service{Name: "checked", Hosts: []string{"checked.example.com"}, Backends: []*url.URL{mustURL(t, "http://"+dead)},
			Health: &config.Health{Path: "/", Interval: time.Hour, Timeout: time.Second}},
	)
	runGateway(t, tg.Gateway) // the first active check runs at once and finds "checked" down
	waitFor(t, "the active check", func() bool { return strings.Contains(tg.log.String(), "service=checked") })
	srv := serveHandler(t, tg.Handler(config.Private))
	tlsSrv := httptest.NewUnstartedServer(tg.Handler(config.Private))
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	c := newClient(t)
	html := http.Header{"Accept": {"text/html,application/xhtml+xml,*/*;q=0.8"}}
	tests := []struct {
		name   string
		srv    *httptest.Server
		host   string
		hdr    http.Header
		status int
		ctype  string
	}{
		{"502 refused", srv, "dead.example.com", nil, 502, "text/plain; charset=utf-8"},
		{"502 again: a lone backend marked down by a request is still tried", srv, "dead.example.com", html, 502, "text/html; charset=utf-8"},
		{"503 down by its health check", srv, "checked.example.com", html, 503, "text/html; charset=utf-8"},
		{"504 timeout", srv, "slow.example.com", nil, 504, "text/plain; charset=utf-8"},
		{"504 timeout does not mark down", srv, "slow.example.com", html, 504, "text/html; charset=utf-8"},
		{"404 unknown host", srv, "nope.example.com", html, 404, "text/html; charset=utf-8"},
		{"421 SNI mismatch", tlsSrv, "slow.example.com", nil, 421, "text/plain; charset=utf-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := c
			u := tt.srv.URL + "/"
			if tt.srv == tlsSrv {
				cl = tlsSrv.Client()
				cl.Transport.(*http.Transport).TLSClientConfig.ServerName = "dead.example.com"
				cl.Transport.(*http.Transport).TLSClientConfig.InsecureSkipVerify = true
			}
			r := do(t, cl, "GET", u, tt.host, tt.hdr, nil)
			if r.Status != tt.status || r.Header.Get("Content-Type") != tt.ctype {
				t.Fatalf("got %d %q, want %d %q: %s", r.Status, r.Header.Get("Content-Type"), tt.status, tt.ctype, r.Body)
			}
			_, deadPort, _ := net.SplitHostPort(dead)
			_, slowPort, _ := net.SplitHostPort(strings.TrimPrefix(slow.URL, "http://"))
			for _, leak := range []string{"127.0.0.1", deadPort, slowPort, "dial", "refused", "timeout awaiting", "net/http"} {
				if strings.Contains(r.Body, leak) {
					t.Errorf("error page leaks %q:\n%s", leak, r.Body)
				}
			}
		})
	}
	logs := tg.log.String()
	for _, want := range []string{"service=dead backend=http://" + dead, "connection refused", "service=slow", "timeout awaiting response headers"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q:\n%s", want, logs)
		}
	}
}

func TestStatic(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "site")
	for name, body := range map[string]string{
		"site/index.html":    "home",
		"site/a.txt":         "a",
		"site/sub/b.txt":     "b",
		"site/docs/index.md": "docs",
		"secret.txt":         "secret",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(root, "secret.txt"), filepath.Join(dir, "link.txt")); err != nil {
		t.Fatal(err)
	}
	tg := newTestGateway(t, config.Limits{}, &config.Service{Name: "files", Hosts: []string{"files.example.com"}, Static: dir})
	srv := serveHandler(t, tg.Handler(config.Private))
	c := newClient(t)
	tests := []struct {
		name, path string
		status     int
		body       string
	}{
		{"index", "/", 200, "home"},
		{"file", "/a.txt", 200, "a"},
		{"file in directory", "/sub/b.txt", 200, "b"},
		{"no listing", "/sub/", 404, ""},
		{"no listing without index.html", "/docs/", 404, ""},
		{"missing", "/nope", 404, ""},
		{"symlink out of the directory", "/link.txt", 404, ""},
		{"escaped dot-dot", "/%2e%2e/secret.txt", 400, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, c, "GET", srv.URL+tt.path, "files.example.com", nil, nil)
			if r.Status != tt.status || tt.body != "" && r.Body != tt.body {
				t.Fatalf("%d %q, want %d %q", r.Status, r.Body, tt.status, tt.body)
			}
			if strings.Contains(r.Body, "secret") || strings.Contains(r.Body, "b.txt") {
				t.Errorf("leaks: %q", r.Body)
			}
		})
	}
}

func TestHTTPHandler(t *testing.T) {
	be := startBackend(t, "b")
	tg := newTestGateway(t, config.Limits{},
		&config.Service{Name: "pub", Hosts: []string{"public.example.com"}, Expose: config.Public, Backends: []*url.URL{mustURL(t, be.URL)}},
		&config.Service{Name: "priv", Hosts: []string{"private.example.com"}, Backends: []*url.URL{mustURL(t, be.URL)}},
		&config.Service{Name: "plain", Hosts: []string{"plain.example.com"}, Expose: config.Public, AllowHTTP: true, Backends: []*url.URL{mustURL(t, be.URL)}},
	)
	public := serveHandler(t, tg.HTTPHandler(config.Public))
	private := serveHandler(t, tg.HTTPHandler(config.Private))
	c := newClient(t)
	tests := []struct {
		name     string
		srv      *httptest.Server
		host     string
		status   int
		location string
	}{
		{"public redirect on 443", public, "public.example.com:80", 308, "https://public.example.com/x/y?q=1&r=%2F"},
		{"private redirect with port", private, "Private.example.com", 308, "https://private.example.com:9443/x/y?q=1&r=%2F"},
		{"private host on public", public, "private.example.com", 404, ""},
		{"unknown host", private, "nope.example.com", 404, ""},
		{"allow_http is proxied", public, "plain.example.com", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, c, "GET", tt.srv.URL+"/x/y?q=1&r=%2F", tt.host, nil, nil)
			if r.Status != tt.status || r.Header.Get("Location") != tt.location {
				t.Fatalf("%d %q, want %d %q", r.Status, r.Header.Get("Location"), tt.status, tt.location)
			}
		})
	}
}

func TestAccessLogAndMetrics(t *testing.T) {
	be := startBackend(t, "b")
	var access testpeer.Buffer
	reg := prometheus.NewRegistry()
	cfg := &config.Config{Services: []*config.Service{
		{Name: "s", Hosts: []string{"s.example.com"}, Path: "/", Expose: config.Public, Backends: []*url.URL{mustURL(t, be.URL)}},
	}}
	g, err := New(cfg, Options{Access: slog.New(slog.NewJSONHandler(&access, nil)), Metrics: NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	tg := &testGateway{Gateway: g, reg: reg}
	srv := serveHandler(t, g.Handler(config.Public))
	c := newClient(t)
	ok := do(t, c, "GET", srv.URL+"/p?secret=1", "s.example.com", nil, nil)
	do(t, c, "GET", srv.URL+"/", "nope.example.com", nil, nil)

	var lines []map[string]any
	for l := range strings.Lines(access.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		delete(m, "time")
		delete(m, "duration")
		lines = append(lines, m)
	}
	want := []map[string]any{
		{"level": "INFO", "msg": "request", "client": "127.0.0.1", "method": "GET", "host": "s.example.com", "path": "/p",
			"status": 200.0, "bytes": float64(len(ok.Body)), "service": "s", "class": "public", "backend": be.URL},
		{"level": "INFO", "msg": "request", "client": "127.0.0.1", "method": "GET", "host": "nope.example.com", "path": "/",
			"status": 404.0, "bytes": float64(len(errorPages[404].text)), "service": "", "class": "public", "backend": ""},
	}
	if diff := cmp.Diff(want, lines, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("access log (-want +got):\n%s", diff)
	}
	for _, m := range []string{
		`labgate_http_requests_total{class="public",code="200",service="s"} 1`,
		`labgate_http_requests_total{class="public",code="404",service=""} 1`,
		`labgate_http_request_duration_seconds_count{class="public",service="s"} 1`,
		`labgate_backend_up{backend="` + be.URL + `",service="s"} 1`,
	} {
		prefix, _, _ := strings.Cut(m, "} ")
		if got := tg.metric(t, prefix+"}"); got != m {
			t.Errorf("metric %q, want %q", got, m)
		}
	}
}

func TestHTTPSBackend(t *testing.T) {
	be := httptest.NewTLSServer(echoBackend("tls"))
	t.Cleanup(be.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: be.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		tls    config.BackendTLS
		status int
	}{
		{"ca file", config.BackendTLS{CAFile: caFile}, 200},
		{"ca file and server name", config.BackendTLS{CAFile: caFile, ServerName: "example.com"}, 200},
		{"wrong server name", config.BackendTLS{CAFile: caFile, ServerName: "other.example.org"}, 502},
		{"unknown CA", config.BackendTLS{}, 502},
		{"insecure", config.BackendTLS{InsecureSkipVerify: true}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := newTestGateway(t, config.Limits{}, &config.Service{Name: "s", Hosts: []string{"s.example.com"}, BackendTLS: tt.tls, Backends: []*url.URL{mustURL(t, be.URL)}})
			srv := serveHandler(t, tg.Handler(config.Private))
			r := do(t, newClient(t), "GET", srv.URL+"/", "s.example.com", nil, nil)
			if r.Status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tt.status, r.Body)
			}
			if tt.status == 200 && backendOf(t, r) != "tls" {
				t.Fatalf("body %s", r.Body)
			}
			if tt.status != 200 && !strings.Contains(tg.log.String(), "certificate") {
				t.Errorf("the log does not say why:\n%s", tg.log)
			}
		})
	}
}
