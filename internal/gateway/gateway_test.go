package gateway

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/goleak"

	"github.com/labgate/labgate/internal/config"

	"github.com/labgate/labgate/internal/testpeer"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// seen is what a test backend received.
type seen struct {
	Backend string
	Host    string
	Path    string
	Header  http.Header
}

// startBackend runs a real backend on 127.0.0.1:0 that answers with what it received.
func startBackend(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(echoBackend(name))
	t.Cleanup(s.Close)
	return s
}

func echoBackend(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(seen{Backend: name, Host: r.Host, Path: r.URL.Path, Header: r.Header})
	})
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

type testGateway struct {
	*Gateway
	reg *prometheus.Registry
	log *testpeer.Buffer
}

func newTestGateway(t testing.TB, lim config.Limits, services ...*config.Service) *testGateway {
	t.Helper()
	return newTestGatewayWith(t, lim, nil, services...)
}

// newTestGatewayWith is newTestGateway with a change to the options.
func newTestGatewayWith(t testing.TB, lim config.Limits, edit func(*Options), services ...*config.Service) *testGateway {
	t.Helper()
	reg := prometheus.NewRegistry()
	logs := &testpeer.Buffer{}
	for _, s := range services {
		if s.Path == "" {
			s.Path = "/"
		}
	}
	if lim.BackendConnectTimeout == 0 {
		lim.BackendConnectTimeout = 2 * time.Second
	}
	cfg := &config.Config{Services: services, Gateway: config.Gateway{Limits: lim}}
	opts := Options{
		Log:              slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics:          NewMetrics(reg),
		HTTPSPort:        map[config.Class]int{config.Public: 443, config.Private: 9443},
		PassiveCooldown:  time.Minute,
		reverseProxyOnly: testReverseProxy,
	}
	if edit != nil {
		edit(&opts)
	}
	g, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return &testGateway{Gateway: g, reg: reg, log: logs}
}

// metric returns the line of the exposition that starts with prefix.
func (tg *testGateway) metric(t testing.TB, prefix string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(tg.reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for l := range strings.Lines(rec.Body.String()) {
		if strings.HasPrefix(l, prefix) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

func serveHandler(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

type response struct {
	Status int
	Body   string
	Header http.Header
}

func do(t testing.TB, c *http.Client, method, u, host string, hdr http.Header, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{res.StatusCode, string(b), res.Header}
}

func backendOf(t testing.TB, r response) string {
	t.Helper()
	if r.Status != http.StatusOK {
		return ""
	}
	var s seen
	if err := json.Unmarshal([]byte(r.Body), &s); err != nil {
		t.Fatalf("backend answer %q: %v", r.Body, err)
	}
	return s.Backend
}

func newClient(t testing.TB) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// classServices is a public and a private service for the class tests.
func classServices(t *testing.T) []*config.Service {
	pub := startBackend(t, "public")
	priv := startBackend(t, "private")
	return []*config.Service{
		{Name: "pub", Hosts: []string{"public.example.com"}, Expose: config.Public, Backends: []*url.URL{mustURL(t, pub.URL)}},
		{Name: "priv", Hosts: []string{"private.example.com"}, Expose: config.Private, Backends: []*url.URL{mustURL(t, priv.URL)}},
	}
}

func TestRouting(t *testing.T) {
	site, api, v2, tenants := startBackend(t, "site"), startBackend(t, "api"), startBackend(t, "v2"), startBackend(t, "tenants")
	tg := newTestGateway(t, config.Limits{},
		&config.Service{Name: "site", Hosts: []string{"example.com", "www.example.com"}, Expose: config.Public, Backends: []*url.URL{mustURL(t, site.URL)}},
		&config.Service{Name: "api", Hosts: []string{"example.com"}, Path: "/api", Expose: config.Public, Backends: []*url.URL{mustURL(t, api.URL)}},
		&config.Service{Name: "v2", Hosts: []string{"example.com"}, Path: "/api/v2/", Expose: config.Public, Backends: []*url.URL{mustURL(t, v2.URL)}},
		&config.Service{Name: "tenants", Hosts: []string{"*.apps.example.com"}, Expose: config.Public, Backends: []*url.URL{mustURL(t, tenants.URL)}},
	)
	srv := serveHandler(t, tg.Handler(config.Public))
	c := newClient(t)
	tests := []struct {
		name, host, path string
		want             string // backend; "" for a 404
	}{
		{"root", "example.com", "/", "site"},
		{"host with port", "example.com:443", "/", "site"},
		{"host upper case with dot", "EXAMPLE.com.", "/", "site"},
		{"other host", "www.example.com", "/api", "site"},
		{"prefix", "example.com", "/api", "api"},
		{"below prefix", "example.com", "/api/users", "api"},
		{"not a segment", "example.com", "/apix", "site"},
		{"longest prefix", "example.com", "/api/v2/x", "v2"},
		{"wildcard", "a.apps.example.com", "/", "tenants"},
		{"wildcard two labels", "a.b.apps.example.com", "/", ""},
		{"unknown", "example.net", "/", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, c, "GET", srv.URL+tt.path, tt.host, nil, nil)
			if tt.want == "" && r.Status != http.StatusNotFound {
				t.Fatalf("status %d, want 404", r.Status)
			}
			if diff := cmp.Diff(tt.want, backendOf(t, r)); diff != "" {
				t.Errorf("backend (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("host header is kept", func(t *testing.T) {
		var s seen
		r := do(t, c, "GET", srv.URL+"/api/x?q=1", "Example.com:8443", nil, nil)
		if err := json.Unmarshal([]byte(r.Body), &s); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(seen{Backend: "api", Host: "Example.com:8443", Path: "/api/x"}, s, cmpIgnoreHeader); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("dot-dot path", func(t *testing.T) {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "GET /api/../admin HTTP/1.1\r\nHost: example.com\r\n\r\n")
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d, want 400", res.StatusCode)
		}
	})
}

var cmpIgnoreHeader = cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Header" }, cmp.Ignore())

// rawRequest writes req on a new connection to addr and reads the answer.
func rawRequest(t *testing.T, addr, req string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestClassEnforcement(t *testing.T) {
	tg := newTestGateway(t, config.Limits{}, classServices(t)...)
	public := serveHandler(t, tg.Handler(config.Public))
	private := serveHandler(t, tg.Handler(config.Private))
	c := newClient(t)
	unknown := do(t, c, "GET", public.URL, "unknown.example.com", nil, nil)
	if unknown.Status != http.StatusNotFound {
		t.Fatalf("unknown host: status %d", unknown.Status)
	}

	hostTests := []struct {
		name   string
		srv    *httptest.Server
		host   string
		status int
		want   string
	}{
		{"public host on public", public, "public.example.com", 200, "public"},
		{"private host on public", public, "private.example.com", 404, ""},
		{"private host with port and case on public", public, "PRIVATE.example.com.:443", 404, ""},
		{"private host on private", private, "private.example.com", 200, "private"},
		{"public host on private", private, "public.example.com", 200, "public"},
	}
	for _, tt := range hostTests {
		t.Run("host header/"+tt.name, func(t *testing.T) {
			r := do(t, c, "GET", tt.srv.URL+"/", tt.host, nil, nil)
			if r.Status != tt.status || backendOf(t, r) != tt.want {
				t.Fatalf("status %d body %q, want %d from %q", r.Status, r.Body, tt.status, tt.want)
			}
			if tt.status == 404 && r.Body != unknown.Body {
				t.Errorf("refused private host answers differently from an unknown host:\n%s\n%s", r.Body, unknown.Body)
			}
		})
	}

	absTests := []struct {
		name   string
		srv    *httptest.Server
		req    string
		status int
		want   string
	}{
		{"absolute private, Host public", public, "GET http://private.example.com/ HTTP/1.1\r\nHost: public.example.com\r\n\r\n", 404, ""},
		{"absolute public, Host private", public, "GET http://public.example.com/ HTTP/1.1\r\nHost: private.example.com\r\n\r\n", 200, "public"},
		{"absolute private on private", private, "GET http://private.example.com/ HTTP/1.1\r\nHost: public.example.com\r\n\r\n", 200, "private"},
	}
	for _, tt := range absTests {
		t.Run("absolute-form/"+tt.name, func(t *testing.T) {
			status, body := rawRequest(t, tt.srv.Listener.Addr().String(), tt.req)
			if status != tt.status {
				t.Fatalf("status %d, want %d (%s)", status, tt.status, body)
			}
			if tt.want != "" && !strings.Contains(body, `"Backend":"`+tt.want+`"`) {
				t.Fatalf("answered by the wrong backend: %s", body)
			}
		})
	}

	// HTTP/2 over TLS: :authority is what the client asks for.
	h2 := httptest.NewUnstartedServer(tg.Handler(config.Public))
	h2.EnableHTTP2 = true
	h2.StartTLS()
	t.Cleanup(h2.Close)
	h2Tests := []struct {
		name   string
		sni    string // "" sends none (the URL is an IP)
		host   string
		status int
	}{
		{"no SNI, :authority public", "", "public.example.com", 200},
		{"no SNI, :authority private", "", "private.example.com", 404},
		{"SNI public, :authority private", "public.example.com", "private.example.com", 421},
		{"SNI private, :authority private", "private.example.com", "private.example.com", 404},
		{"SNI public, :authority public", "public.example.com", "public.example.com:443", 200},
		{"SNI upper case with dot", "PUBLIC.example.com.", "public.example.com", 200},
	}
	for _, tt := range h2Tests {
		t.Run("http2/"+tt.name, func(t *testing.T) {
			tr := &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{ServerName: tt.sni, InsecureSkipVerify: true}}
			defer tr.CloseIdleConnections()
			req, _ := http.NewRequest("GET", h2.URL+"/", nil)
			req.Host = tt.host
			res, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.ProtoMajor != 2 {
				t.Fatalf("proto %s, want HTTP/2", res.Proto)
			}
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tt.status, b)
			}
			if tt.status == 200 && !strings.Contains(string(b), `"Backend":"public"`) {
				t.Fatalf("wrong backend: %s", b)
			}
		})
	}
}

func TestForwardedHeaders(t *testing.T) {
	be := startBackend(t, "b")
	tg := newTestGateway(t, config.Limits{}, &config.Service{Name: "s", Hosts: []string{"s.example.com"}, Expose: config.Public, Backends: []*url.URL{mustURL(t, be.URL)}})
	plain := serveHandler(t, tg.Handler(config.Public))
	tlsSrv := httptest.NewUnstartedServer(tg.Handler(config.Public))
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)

	spoof := http.Header{
		"X-Forwarded-For":   {"6.6.6.6"},
		"X-Forwarded-Proto": {"https"},
		"X-Forwarded-Host":  {"evil.example"},
		"X-Real-Ip":         {"6.6.6.6"},
		"Forwarded":         {"for=6.6.6.6;proto=https"},
		"True-Client-Ip":    {"6.6.6.6"},
		"X-Client-Ip":       {"6.6.6.6"},
		"Connection":        {"X-Secret"},
		"X-Secret":          {"hop-by-hop"},
	}
	tests := []struct {
		name  string
		url   string
		c     *http.Client
		proto string
	}{
		{"http", plain.URL, newClient(t), "http"},
		{"https", tlsSrv.URL, tlsSrv.Client(), "https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, tt.c, "GET", tt.url+"/", "s.example.com", spoof, nil)
			var s seen
			if err := json.Unmarshal([]byte(r.Body), &s); err != nil {
				t.Fatalf("%d %s: %v", r.Status, r.Body, err)
			}
			got := http.Header{}
			for k, v := range s.Header {
				if k != "User-Agent" && k != "Accept-Encoding" {
					got[k] = v
				}
			}
			want := http.Header{
				"X-Forwarded-For":   {"127.0.0.1"},
				"X-Real-Ip":         {"127.0.0.1"},
				"X-Forwarded-Proto": {tt.proto},
				"X-Forwarded-Host":  {"s.example.com"},
				"Forwarded":         {"for=127.0.0.1;proto=" + tt.proto + ";host=s.example.com"},
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("headers at the backend (-want +got):\n%s", diff)
			}
			if s.Host != "s.example.com" {
				t.Errorf("Host %q at the backend", s.Host)
			}
		})
	}
}

func TestForwardedValue(t *testing.T) {
	tests := []struct {
		name, ip, proto, host, want string
	}{
		{"ipv4", "192.0.2.1", "https", "a.example.org", "for=192.0.2.1;proto=https;host=a.example.org"},
		{"ipv6", "2001:db8::1", "http", "a.example.org", `for="[2001:db8::1]";proto=http;host=a.example.org`},
		{"host with port", "192.0.2.1", "https", "a.example.org:8443", `for=192.0.2.1;proto=https;host="a.example.org:8443"`},
		{"ipv6 host", "192.0.2.1", "https", "[::1]:8443", `for=192.0.2.1;proto=https;host="[::1]:8443"`},
		{"no host", "192.0.2.1", "http", "", "for=192.0.2.1;proto=http"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, forwardedValue(tt.ip, tt.proto, tt.host)); diff != "" {
				t.Error(diff)
			}
		})
	}
}
