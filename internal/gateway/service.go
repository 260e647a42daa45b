package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/labgate/labgate/internal/config"
)

// service is one HTTP service of a generation.
type service struct {
	cfg         *config.Service
	log         *slog.Logger
	metrics     *Metrics
	export      *exportGate
	backends    []*backend
	next        atomic.Uint32 // round-robin position
	files       http.Handler  // static services
	echo        bool
	passthrough bool                            // TLS goes to the backend undecrypted; HTTP only redirects
	observe     func(code int, d time.Duration) // passive health; nil: none
	fed         bool                            // active health comes through SetBackendHealth
	bodyIdle    time.Duration                   // a request body silent this long fails (limits.idle_timeout)
}

func (g *Gateway) newService(sc *config.Service, lim config.Limits, opts Options) (*service, error) {
	s := &service{cfg: sc, log: opts.Log.With("service", sc.Name), metrics: opts.Metrics, export: g.export, echo: sc.Echo,
		bodyIdle: lim.IdleTimeout}
	if opts.Observe != nil {
		s.observe = opts.Observe(sc.Name)
	}
	s.fed = sc.Health != nil && opts.Fed != nil && opts.Fed(sc.Name)
	switch {
	case sc.Static != "":
		root, err := os.OpenRoot(sc.Static)
		if err != nil {
			return nil, fmt.Errorf("static: %w", err)
		}
		g.roots = append(g.roots, root)
		s.files = http.FileServer(http.FS(noListing{root.FS()}))
	case len(sc.Backends) > 0:
		tlsConf, err := sc.BackendTLS.ClientConfig()
		if err != nil {
			return nil, err
		}
		for _, u := range sc.Backends {
			s.backends = append(s.backends, newBackend(s, u, tlsConf, lim, opts))
		}
	case sc.Echo:
	case sc.Passthrough != nil:
		// TLS for these hosts goes to the backend undecrypted (routed by SNI
		// before any HTTP); plain HTTP is redirected to it like any host.
		s.passthrough = true
	default:
		return nil, errors.New("neither backends, static nor echo")
	}
	return s, nil
}

func (s *service) serve(rw *responseWriter, r *http.Request) {
	switch {
	case s.files != nil:
		s.files.ServeHTTP(rw, r)
	case s.echo:
		serveEcho(rw, r, s.cfg.Name)
	case s.passthrough:
		// Only reachable over a connection whose TLS labgate terminated for
		// another name: the client must open one for this host.
		writeError(rw, r, http.StatusMisdirectedRequest)
	default:
		b := s.pick(nil)
		if b == nil {
			s.log.Warn("no healthy backend")
			writeError(rw, r, http.StatusServiceUnavailable)
			return
		}
		rw.backend = b
		limitBodyIdle(rw, r, s.bodyIdle)
		b.serve(rw, r)
	}
}

// pick returns the next healthy backend in round-robin order, other than
// not. When failed requests alone took every backend out (no active check
// says down), it tries them anyway: a lone backend that restarted must not
// cost a cooldown of 503s. nil when every backend is down by its check.
func (s *service) pick(not *backend) *backend {
	n := uint32(len(s.backends))
	if n == 1 {
		if b := s.backends[0]; b != not && !b.checkDown.Load() {
			return b
		}
		return nil
	}
	start := s.next.Add(1)
	var fallback *backend
	for i := range n {
		b := s.backends[(start+i)%n]
		if b == not {
			continue
		}
		if b.healthy() {
			return b
		}
		if fallback == nil && !b.checkDown.Load() {
			fallback = b
		}
	}
	return fallback
}

// noListing serves files and index.html, never a directory listing. Its
// file system is an os.Root: nothing outside the directory is reachable,
// not even through symlinks.
type noListing struct{ fsys fs.FS }

func (n noListing) Open(name string) (fs.File, error) {
	f, err := n.fsys.Open(name)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return nil, err
		}
		// Symlinks out of the directory, odd names: as if absent.
		return nil, fs.ErrNotExist
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.IsDir() {
		idx, err := n.fsys.Open(path.Join(name, "index.html"))
		if err != nil {
			f.Close()
			return nil, fs.ErrNotExist
		}
		idx.Close()
	}
	return f, nil
}

// backend is one upstream of a service, with its own connection pool.
type backend struct {
	svc           *service
	url           *url.URL
	name          string // for logs and metrics: scheme://host:port
	transport     *http.Transport
	proxy         *httputil.ReverseProxy
	h1            *h1Pool // the lean path (http:// backends); nil: ReverseProxy only
	headerTimeout time.Duration
	log           *slog.Logger
	m             backendMetrics
	cooldown      time.Duration

	up        atomic.Bool  // what was last reported: logs and labgate_backend_up
	downUntil atomic.Int64 // unix nanoseconds; passive failure until then
	checkDown atomic.Bool  // the last active check failed
	mu        sync.Mutex   // serialises transitions
}

// bufferPool is shared by every proxy: 32 KiB copy buffers.
var bufferPool = &proxyBuffers{pool: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

type proxyBuffers struct{ pool sync.Pool }

func (p *proxyBuffers) Get() []byte  { return *p.pool.Get().(*[]byte) }
func (p *proxyBuffers) Put(b []byte) { p.pool.Put(&b) }

func newBackend(s *service, u *url.URL, tlsConf *tls.Config, lim config.Limits, opts Options) *backend {
	name := u.Scheme + "://" + u.Host
	b := &backend{
		svc:      s,
		url:      u,
		name:     name,
		log:      s.log.With("backend", name),
		m:        opts.Metrics.forBackend(s.cfg.Name, name),
		cooldown: opts.PassiveCooldown,
	}
	connect := lim.BackendConnectTimeout
	if connect <= 0 {
		connect = 10 * time.Second
	}
	dialer := &net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}
	b.headerTimeout = lim.BackendHeaderTimeout
	if u.Scheme == "http" && !opts.reverseProxyOnly {
		b.h1 = newH1Pool(u.Host, dialer)
	}
	b.transport = &http.Transport{
		Proxy:                 nil, // never an environment proxy
		DialContext:           dialer.DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: lim.BackendHeaderTimeout,
		TLSHandshakeTimeout:   connect,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     u.Scheme == "https",
	}
	if u.Scheme == "https" {
		b.transport.TLSClientConfig = tlsConf.Clone()
	}
	b.proxy = &httputil.ReverseProxy{
		Rewrite:      b.rewrite,
		Transport:    b.transport,
		BufferPool:   bufferPool,
		ErrorHandler: b.proxyError,
		ErrorLog:     slog.NewLogLogger(b.log.Handler(), slog.LevelDebug),
		// FlushInterval 0: ReverseProxy already flushes every write of
		// responses without a length (chunked streams) and of
		// text/event-stream; responses with a Content-Length are left to the
		// server's buffering, which saves a syscall per write.
	}
	up := true
	if s.fed && opts.LastCheck != nil {
		if known, passed := opts.LastCheck(s.cfg.Name, name); known && !passed {
			up = false
			b.checkDown.Store(true)
		}
	}
	b.up.Store(up)
	if up {
		s.export.set(b.m.up, 1)
	} else {
		s.export.set(b.m.up, 0)
	}
	return b
}

// serve proxies r to b: over the lean HTTP/1.1 path when it applies, else
// through ReverseProxy.
func (b *backend) serve(rw *responseWriter, r *http.Request) {
	if r.Header["Upgrade"] != nil {
		dropH2CUpgrade(r.Header)
	}
	if b.useLean(r) {
		b.serveLean(rw, r)
		return
	}
	b.proxy.ServeHTTP(rw, r)
}

// rewrite is the proxy's Rewrite: ReverseProxy has removed hop-by-hop
// headers and the client's Forwarded and X-Forwarded-* headers already.
// The Host header stays what the client asked for.
func (b *backend) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = b.url.Scheme
	pr.Out.URL.Host = b.url.Host
	setForwarded(pr.Out.Header, pr.In)
	for k := range pr.Out.Trailer {
		if dropTrailer(k) {
			delete(pr.Out.Trailer, k)
		}
	}
}

// spoofable are headers through which clients claim an address; backends
// see only what the gateway sets.
var spoofable = []string{"X-Real-Ip", "X-Forwarded-Port", "X-Forwarded-Server", "X-Forwarded-Prefix",
	"X-Client-Ip", "True-Client-Ip", "Cf-Connecting-Ip", "X-Cluster-Client-Ip", "X-Original-Forwarded-For",
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

// setForwarded replaces the client's forwarding headers in h with the
// client address of in (the real client: from a PROXY header or the socket).
func setForwarded(h http.Header, in *http.Request) {
	for _, k := range spoofable {
		delete(h, k)
	}
	for k := range h {
		if spoofableAlias(k) {
			delete(h, k)
		}
	}
	ip, proto, host := forwardedFields(in)
	vals := make([]string, 5) // one allocation for every value
	vals[0], vals[1], vals[2], vals[3] = ip, ip, proto, host
	vals[4] = forwardedValue(ip, proto, host)
	h["X-Forwarded-For"] = vals[0:1:1]
	h["X-Real-Ip"] = vals[1:2:2]
	h["X-Forwarded-Proto"] = vals[2:3:3]
	h["X-Forwarded-Host"] = vals[3:4:4]
	h["Forwarded"] = vals[4:5:5]
}

// forwardedFields are the client address, protocol and host the forwarding
// headers of a request to a backend carry.
func forwardedFields(in *http.Request) (ip, proto, host string) {
	proto = "http"
	if in.TLS != nil {
		proto = "https"
	}
	return clientIP(in.RemoteAddr), proto, in.Host
}

// forwardedValue is an RFC 7239 Forwarded element: IPv6 addresses are
// bracketed and quoted, and so is a host that is not a plain token.
func forwardedValue(ip, proto, host string) string {
	n := len("for=;proto=;host=") + len(ip) + len(proto) + len(host) + 4 + 2*strings.Count(host, `"`)
	b := make([]byte, 0, n)
	b = append(b, "for="...)
	if strings.IndexByte(ip, ':') >= 0 {
		b = append(b, `"[`...)
		b = append(b, ip...)
		b = append(b, `]"`...)
	} else {
		b = append(b, ip...)
	}
	b = append(b, ";proto="...)
	b = append(b, proto...)
	if host != "" {
		b = append(b, ";host="...)
		if isToken(host) {
			b = append(b, host...)
		} else {
			b = append(b, '"')
			for i := 0; i < len(host); i++ {
				if c := host[i]; c == '"' || c == '\\' {
					b = append(b, '\\')
				}
				b = append(b, host[i])
			}
			b = append(b, '"')
		}
	}
	return string(b)
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
}

// proxyError is the proxy's ErrorHandler. It gets back the *responseWriter
// the handler passed to the proxy, and with it the original request. A
// request that never reached the backend is retried once on another one.
func (b *backend) proxyError(w http.ResponseWriter, out *http.Request, err error) {
	rw, ok := w.(*responseWriter)
	if !ok { // not through our handler (tests calling the proxy directly)
		writeError(w, out, http.StatusBadGateway)
		return
	}
	in := rw.req
	if clientBodyFailed(in, err) {
		// The client's body stalled or broke off (which cancels the
		// request's context too): not the backend's fault.
		b.log.Debug("client request body failed", "error", err)
		if rw.status == 0 && !rw.hijacked {
			writeError(rw, in, http.StatusBadRequest)
		}
		return
	}
	if in.Context().Err() != nil {
		b.log.Debug("client went away", "error", err)
		return
	}
	reason, code := classify(err)
	if b.m.errors[reason] != nil {
		b.m.errors[reason].Inc()
	}
	if reason == reasonDial || reason == reasonTransport {
		b.markDown(err)
	}
	if !rw.retried && rw.status == 0 && !rw.hijacked && retryable(in, reason) {
		if nb := b.svc.pick(b); nb != nil {
			b.log.Debug("retrying on another backend", "error", err, "retry", nb.name)
			rw.retried, rw.backend = true, nb
			nb.serve(rw, in)
			return
		}
	}
	b.log.Warn("backend failed", "method", in.Method, "path", in.URL.Path, "error", err)
	if rw.status == 0 && !rw.hijacked {
		writeError(rw, in, code)
	}
}

// classify says why a round trip failed, and what the client is told:
// dial (no connection), timeout (no answer in time), transport (the
// connection broke) or protocol (an answer the proxy could not pass on, a
// TLS verification failure, a refused upgrade).
func classify(err error) (reason int, code int) {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return reasonDial, http.StatusBadGateway
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return reasonTimeout, http.StatusGatewayTimeout
	}
	if ne != nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
		return reasonTransport, http.StatusBadGateway
	}
	return reasonProtocol, http.StatusBadGateway
}

// retryable reports whether a failed request may go to another backend: no
// byte of its body can have been sent, and either it never reached the
// backend (dial) or it is idempotent.
func retryable(r *http.Request, reason int) bool {
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		return false
	}
	switch reason {
	case reasonDial:
		return true
	case reasonTransport:
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
			return true
		}
	}
	return false
}
