package daemon

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/labgate/labgate/internal/config"

	"github.com/labgate/labgate/internal/testpeer"
)

// Listener addresses: port 0 on distinct loopback addresses, so one config
// can name several listeners and Daemon.Addr tells the bound ports.
const (
	pubHTTPS  = "127.0.0.11:0"
	pubHTTP   = "127.0.0.12:0"
	privHTTPS = "127.0.0.21:0"
	privHTTP  = "127.0.0.22:0"
	admin     = "127.0.0.31:0"
)

// seen is what the test backend reports about a request it received.
type seen struct {
	Service string
	Host    string
	Path    string
	Header  http.Header
}

// newBackend starts a backend that answers with what it saw, and a websocket
// echo at /ws.
func newBackend(t *testing.T, name string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := context.Background()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, append([]byte(name+":"), msg...)); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(seen{Service: name, Host: r.Host, Path: r.URL.Path, Header: r.Header})
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

type lab struct {
	t       *testing.T
	d       *Daemon
	dir     string
	file    string
	root    *x509.CertPool
	cancel  context.CancelFunc
	done    chan error
	logs    *testpeer.Buffer
	backend map[string]*httptest.Server
}

// labConfig is the file under test; %[1]s and %[2]s are the backends of the
// public service "www" and the private service "vault".
const labConfig = `version: 1
domain: lab.test
state_dir: ./state
log: { level: debug, access: true }
gateway:
  public:
    https: ` + pubHTTPS + `
    http: ` + pubHTTP + `
    trusted_relays: [127.0.0.1/32]
  private:
    https: [` + privHTTPS + `]
    http: [` + privHTTP + `]
    allow: [127.0.0.0/8]
  admin: ` + admin + `
  limits: { proxy_header_timeout: 500ms, shutdown_grace: 2s }
services:
  - { name: www, host: www, expose: public, backend: "%[1]s" }
  - { name: vault, host: vault, backend: "%[2]s" }
`

func startLab(t *testing.T) *lab { return startLabWatching(t, true) }

func startLabWatching(t *testing.T, follow bool) *lab {
	return startLabWith(t, follow, "")
}

// startLabWith starts a lab whose file is labConfig with extra appended
// (more services, for one).
func startLabWith(t *testing.T, follow bool, extra string) *lab {
	t.Helper()
	return startLabOptions(t, follow, extra, nil)
}

// startLabOptions is startLabWith with a change to the daemon's options.
func startLabOptions(t *testing.T, follow bool, extra string, edit func(*Options)) *lab {
	t.Helper()
	l := &lab{t: t, dir: t.TempDir(), logs: &testpeer.Buffer{}, backend: map[string]*httptest.Server{}}
	l.backend["www"] = newBackend(t, "www")
	l.backend["vault"] = newBackend(t, "vault")
	l.file = filepath.Join(l.dir, "lab.yaml")
	l.write(fmt.Sprintf(labConfig, l.backend["www"].URL, l.backend["vault"].URL) + extra)

	watch := l.file
	if !follow {
		watch = ""
	}
	opts := Options{
		Load:   func() (*config.Config, error) { return config.Load(l.file, config.Options{}) },
		Watch:  watch,
		Stderr: l.logs,
	}
	if edit != nil {
		edit(&opts)
	}
	l.run(opts, 10*time.Second)
	t.Cleanup(l.stop)
	l.trustInternalCA()
	return l
}

// run starts the daemon New(opts) builds and returns once it is ready,
// failing the test if Run returns first or patience runs out.
func (l *lab) run(opts Options, patience time.Duration) {
	l.t.Helper()
	l.d, l.cancel, l.done = runDaemon(l.t, opts, l.logs, patience)
}

// runDaemon starts New(opts) and returns once it called Ready, failing t if
// Run returns first or patience runs out. cancel stops it; done receives
// what Run returned.
func runDaemon(t testing.TB, opts Options, logs fmt.Stringer, patience time.Duration) (d *Daemon, cancel context.CancelFunc, done chan error) {
	t.Helper()
	ready := make(chan struct{})
	opts.Ready = func(*Daemon) { close(ready) }
	d = New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done = make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("daemon stopped: %v\n%s", err, logs)
	case <-time.After(patience):
		cancel()
		<-done
		t.Fatalf("daemon did not start\n%s", logs)
	}
	return d, cancel, done
}

// trustInternalCA makes the lab's clients trust the root of the internal
// CA the daemon wrote to its state_dir.
func (l *lab) trustInternalCA() {
	l.t.Helper()
	pem, err := os.ReadFile(filepath.Join(l.dir, "state", "ca", "root.crt"))
	if err != nil {
		l.t.Fatalf("internal CA root not written: %v", err)
	}
	l.root = x509.NewCertPool()
	l.root.AppendCertsFromPEM(pem)
}

func (l *lab) stop() { stopDaemon(l.t, l.cancel, l.done, l.logs) }

// stopDaemon stops a daemon runDaemon started and waits for Run to return
// nil; the daemon's logs go into a failed test's output.
func stopDaemon(t testing.TB, cancel context.CancelFunc, done chan error, logs fmt.Stringer) {
	t.Helper()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("daemon: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("daemon did not stop")
	}
	if t.Failed() {
		t.Logf("daemon logs:\n%s", logs)
	}
}

func (l *lab) write(s string) {
	l.t.Helper()
	// Write then rename, as editors do, so the watcher never reads half a file.
	tmp := l.file + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
		l.t.Fatal(err)
	}
	if err := os.Rename(tmp, l.file); err != nil {
		l.t.Fatal(err)
	}
}

func (l *lab) addr(configured string) string {
	l.t.Helper()
	a := l.d.Addr(configured)
	if a == nil {
		l.t.Fatalf("no listener for %s", configured)
	}
	return a.String()
}

// client returns an HTTP client whose connections go to addr, optionally
// through a PROXY v1 header claiming to come from claimed, dialing from the
// local address from ("" = any).
func (l *lab) client(addr, from, claimed string) *http.Client {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		d := net.Dialer{Timeout: 5 * time.Second}
		if from != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
		}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil || claimed == "" {
			return c, err
		}
		dst := c.RemoteAddr().(*net.TCPAddr)
		_, err = fmt.Fprintf(c, "PROXY TCP4 %s %s 40000 %d\r\n", claimed, dst.IP, dst.Port)
		return c, err
	}
	return &http.Client{
		Transport: &http.Transport{
			DialContext:       dial,
			TLSClientConfig:   &tls.Config{RootCAs: l.root},
			ForceAttemptHTTP2: true,
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
}

func get(t *testing.T, c *http.Client, url string, header ...string) (int, seen, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		if strings.EqualFold(header[i], "Host") {
			req.Host = header[i+1]
			continue
		}
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, seen{}, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var s seen
	_ = json.Unmarshal(body, &s)
	return resp.StatusCode, s, string(body)
}

func TestPublicRequiresProxyHeader(t *testing.T) {
	l := startLab(t)
	pub := l.addr(pubHTTPS)

	t.Run("trusted relay with PROXY header", func(t *testing.T) {
		code, s, body := get(t, l.client(pub, "127.0.0.1", "203.0.113.9"), "https://www.lab.test/x")
		if code != 200 || s.Service != "www" {
			t.Fatalf("got %d %q", code, body)
		}
		if got := s.Header.Get("X-Forwarded-For"); got != "203.0.113.9" {
			t.Errorf("X-Forwarded-For = %q, want the address from the PROXY header", got)
		}
		if got := s.Header.Get("X-Real-Ip"); got != "203.0.113.9" {
			t.Errorf("X-Real-IP = %q", got)
		}
		if got := s.Header.Get("X-Forwarded-Proto"); got != "https" {
			t.Errorf("X-Forwarded-Proto = %q", got)
		}
	})
	t.Run("trusted relay without PROXY header", func(t *testing.T) {
		code, _, body := get(t, l.client(pub, "127.0.0.1", ""), "https://www.lab.test/")
		if code != 0 {
			t.Fatalf("served without a PROXY header: %d %q", code, body)
		}
	})
	t.Run("untrusted source with a spoofed PROXY header", func(t *testing.T) {
		code, _, body := get(t, l.client(pub, "127.0.0.5", "203.0.113.9"), "https://www.lab.test/")
		if code != 0 {
			t.Fatalf("served an untrusted source: %d %q", code, body)
		}
	})
	t.Run("plain HTTP public listener also requires it", func(t *testing.T) {
		c := l.client(l.addr(pubHTTP), "127.0.0.1", "")
		if code, _, body := get(t, c, "http://www.lab.test/"); code != 0 {
			t.Fatalf("served without a PROXY header: %d %q", code, body)
		}
		c = l.client(l.addr(pubHTTP), "127.0.0.1", "198.51.100.1")
		code, _, _ := get(t, c, "http://www.lab.test/a?b=c")
		if code != http.StatusPermanentRedirect {
			t.Fatalf("got %d, want a redirect to https", code)
		}
	})
	// The refusal is logged as the listener closes the connection, which
	// the client may see first.
	waitFor(t, "the refused untrusted source to be logged", func() bool { return strings.Contains(l.logs.String(), "127.0.0.5") })
	m := scrape(t, l.addr(admin))
	for _, want := range []string{`labgate_listener_refused_total{class="public",reason="not_allowed"} 1`, `labgate_listener_refused_total{class="public",reason="no_header"} 2`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grep(m, "refused"))
		}
	}
}

func TestClassEnforcement(t *testing.T) {
	l := startLab(t)
	pub := l.client(l.addr(pubHTTPS), "127.0.0.1", "203.0.113.9")
	priv := l.client(l.addr(privHTTPS), "", "")

	tests := []struct {
		name   string
		c      *http.Client
		url    string
		header []string
		code   int
		svc    string
	}{
		{"private service privately", priv, "https://vault.lab.test/", nil, 200, "vault"},
		{"public service privately", priv, "https://www.lab.test/", nil, 200, "www"},
		{"public service publicly", pub, "https://www.lab.test/", nil, 200, "www"},
		// No certificate for a private name on a public listener, as for a
		// name labgate does not know: a stranger learns nothing from it.
		{"private service publicly", pub, "https://vault.lab.test/", nil, 0, ""},
		{"unknown host", priv, "https://nope.lab.test/", nil, 0, ""},
		{"unknown host publicly", pub, "https://nope.lab.test/", nil, 0, ""},
		{"SNI public, Host private", pub, "https://www.lab.test/", []string{"Host", "vault.lab.test"}, 421, ""},
		{"SNI and Host differ privately", priv, "https://www.lab.test/", []string{"Host", "vault.lab.test"}, 421, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, s, body := get(t, tt.c, tt.url, tt.header...)
			if code != tt.code || s.Service != tt.svc {
				t.Fatalf("got %d from %q (%.100q), want %d from %q", code, s.Service, body, tt.code, tt.svc)
			}
			if code >= 400 && strings.Contains(body, "127.0.0.1") {
				t.Errorf("error page leaks an address: %q", body)
			}
		})
	}

	t.Run("a private name fails the handshake like an unknown one", func(t *testing.T) {
		var errs []string
		for _, name := range []string{"vault.lab.test", "nope.lab.test"} {
			_, _, body := get(t, pub, "https://"+name+"/")
			errs = append(errs, strings.ReplaceAll(body, name, "NAME"))
		}
		if errs[0] != errs[1] {
			t.Errorf("a private name and an unknown one are told apart:\n%s\n%s", errs[0], errs[1])
		}
	})

	t.Run("absolute-form URI naming the private service", func(t *testing.T) {
		conn, err := net.Dial("tcp", l.addr(pubHTTP))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		dst := conn.RemoteAddr().(*net.TCPAddr)
		fmt.Fprintf(conn, "PROXY TCP4 203.0.113.9 %s 40000 %d\r\n", dst.IP, dst.Port)
		fmt.Fprintf(conn, "GET http://vault.lab.test/ HTTP/1.1\r\nHost: www.lab.test\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 404 || strings.Contains(string(body), `"vault"`) {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
	})

	t.Run("HTTP/2 authority naming the private service", func(t *testing.T) {
		// The TLS connection is for www (SNI); the h2 request's :authority says vault.
		c := l.client(l.addr(pubHTTPS), "127.0.0.1", "203.0.113.9")
		req, _ := http.NewRequest("GET", "https://www.lab.test/", nil)
		req.Host = "vault.lab.test" // becomes :authority over HTTP/2
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Errorf("protocol %s, want HTTP/2", resp.Proto)
		}
		if resp.StatusCode != 421 && resp.StatusCode != 404 {
			t.Fatalf("got %d", resp.StatusCode)
		}
	})
}

func TestForwardedHeadersReplaced(t *testing.T) {
	l := startLab(t)
	c := l.client(l.addr(privHTTPS), "127.0.0.3", "")
	code, s, body := get(t, c, "https://vault.lab.test/",
		"X-Forwarded-For", "6.6.6.6", "X-Real-IP", "6.6.6.6", "Forwarded", "for=6.6.6.6",
		"X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "http")
	if code != 200 {
		t.Fatalf("got %d %q", code, body)
	}
	want := map[string]string{
		"X-Forwarded-For":   "127.0.0.3",
		"X-Real-Ip":         "127.0.0.3",
		"X-Forwarded-Host":  "vault.lab.test",
		"X-Forwarded-Proto": "https",
	}
	for k, v := range want {
		if got := s.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want [%q]", k, got, v)
		}
	}
	if f := s.Header.Get("Forwarded"); strings.Contains(f, "6.6.6.6") || !strings.Contains(f, "127.0.0.3") {
		t.Errorf("Forwarded = %q", f)
	}
}

func TestPrivateAllowList(t *testing.T) {
	l := startLab(t)
	l.write(strings.Replace(fmt.Sprintf(labConfig, l.backend["www"].URL, l.backend["vault"].URL),
		"allow: [127.0.0.0/8]", "allow: [127.0.0.9/32]", 1))
	waitFor(t, "reload", func() bool { return l.d.generation() == 2 })
	if code, _, _ := get(t, l.client(l.addr(privHTTPS), "127.0.0.9", ""), "https://vault.lab.test/"); code != 200 {
		t.Errorf("allowed source: got %d", code)
	}
	if code, _, body := get(t, l.client(l.addr(privHTTPS), "127.0.0.8", ""), "https://vault.lab.test/"); code != 0 {
		t.Errorf("source outside allow was served: %d %q", code, body)
	}
}

func TestReload(t *testing.T) {
	l := startLab(t)
	priv := l.client(l.addr(privHTTPS), "", "")
	httpsAddr := l.addr(privHTTPS)

	// A websocket opened before the reload must survive it.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	wsClient := l.client(httpsAddr, "", "")
	wsClient.Transport.(*http.Transport).ForceAttemptHTTP2 = false
	wsClient.Transport.(*http.Transport).TLSClientConfig.NextProtos = []string{"http/1.1"}
	ws, _, err := websocket.Dial(ctx, "wss://vault.lab.test/ws", &websocket.DialOptions{HTTPClient: wsClient})
	if err != nil {
		t.Fatalf("websocket: %v", err)
	}
	defer ws.CloseNow()
	echo := func(msg string) string {
		t.Helper()
		if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatalf("websocket write: %v", err)
		}
		_, got, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("websocket read: %v", err)
		}
		return string(got)
	}
	if got := echo("before"); got != "vault:before" {
		t.Fatalf("websocket echo %q", got)
	}

	t.Run("bad config is refused and changes nothing", func(t *testing.T) {
		l.write("version: 1\nservices:\n  - name: Bad Name\n    backend: htp://x\n")
		waitFor(t, "refused reload", func() bool {
			return strings.Contains(l.logs.String(), "config refused")
		})
		if m := scrape(t, l.addr(admin)); !strings.Contains(m, "labgate_config_last_reload_successful 0") {
			t.Errorf("metrics after a refused reload:\n%s", grep(m, "labgate_config"))
		}
		if code, s, _ := get(t, priv, "https://vault.lab.test/"); code != 200 || s.Service != "vault" {
			t.Errorf("after a refused reload: %d %q", code, s.Service)
		}
		if l.d.generation() != 1 {
			t.Errorf("generation %d, want 1", l.d.generation())
		}
	})

	t.Run("good config is applied without rebinding", func(t *testing.T) {
		// vault moves to the www backend; a new service appears.
		cfg := fmt.Sprintf(labConfig, l.backend["www"].URL, l.backend["www"].URL) +
			fmt.Sprintf("  - { name: wiki, host: wiki, backend: %q }\n", l.backend["vault"].URL)
		l.write(cfg)
		waitFor(t, "reload", func() bool { return l.d.generation() == 2 })
		if got := l.addr(privHTTPS); got != httpsAddr {
			t.Errorf("listener rebound: %s, was %s", got, httpsAddr)
		}
		if code, s, _ := get(t, priv, "https://wiki.lab.test/"); code != 200 || s.Service != "vault" {
			t.Errorf("new service: %d %q", code, s.Service)
		}
		if code, s, _ := get(t, priv, "https://vault.lab.test/"); code != 200 || s.Service != "www" {
			t.Errorf("moved service: %d %q", code, s.Service)
		}
		m := scrape(t, l.addr(admin))
		for _, want := range []string{"labgate_config_last_reload_successful 1", `labgate_config_reloads_total{result="success"} 1`, `labgate_config_reloads_total{result="failure"} 1`} {
			if !strings.Contains(m, want) {
				t.Errorf("metrics lack %q:\n%s", want, grep(m, "labgate_config"))
			}
		}
	})

	t.Run("unchanged config is not reloaded", func(t *testing.T) {
		if l.d.Reload() {
			t.Errorf("reloaded an unchanged config")
		}
	})

	t.Run("websocket survives", func(t *testing.T) {
		if got := echo("after"); got != "vault:after" {
			t.Fatalf("websocket echo after reload: %q", got)
		}
	})
}

func TestAdmin(t *testing.T) {
	l := startLab(t)
	resp, err := http.Get("http://" + l.addr(admin) + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "ok") {
		t.Errorf("/healthz: %d %q", resp.StatusCode, body)
	}
	get(t, l.client(l.addr(privHTTPS), "", ""), "https://vault.lab.test/")
	m := scrape(t, l.addr(admin))
	for _, want := range []string{"labgate_build_info", "labgate_config_last_reload_successful 1", `labgate_http_requests_total{`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	testpeer.WaitFor(t, 10*time.Second, what, ok)
}

// waitLong is waitFor with the patience of alert grouping (10s).
func waitLong(t *testing.T, what string, ok func() bool) {
	t.Helper()
	testpeer.WaitFor(t, 40*time.Second, what, ok)
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grep(s, substr string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

func TestSIGHUPReloads(t *testing.T) {
	l := startLabWatching(t, false)
	l.write(fmt.Sprintf(labConfig, l.backend["www"].URL, l.backend["vault"].URL) +
		fmt.Sprintf("  - { name: wiki, host: wiki, backend: %q }\n", l.backend["vault"].URL))
	time.Sleep(300 * time.Millisecond) // not followed: nothing happens
	if l.d.generation() != 1 {
		t.Fatalf("reloaded without a signal")
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "reload on SIGHUP", func() bool { return l.d.generation() == 2 })
	if code, s, _ := get(t, l.client(l.addr(privHTTPS), "", ""), "https://wiki.lab.test/"); code != 200 || s.Service != "vault" {
		t.Errorf("after SIGHUP: %d %q", code, s.Service)
	}
}

func TestAdminURL(t *testing.T) {
	for admin, want := range map[string]string{
		"127.0.0.1:9180": "http://127.0.0.1:9180/",
		":9180":          "http://localhost:9180/",
		"0.0.0.0:9180":   "http://localhost:9180/",
		"[::]:9180":      "http://localhost:9180/",
		"[::1]:9180":     "http://[::1]:9180/",
		"":               "",
	} {
		if got := adminURL(admin); got != want {
			t.Errorf("adminURL(%q) = %q, want %q", admin, got, want)
		}
	}
}
