package gateway

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labgate/labgate/internal/config"
)

// handler serves one class on HTTPS listeners (tls) or plain-HTTP ones.
type handler struct {
	g         *Gateway
	class     config.Class
	table     *table
	unknown   *classMetrics // requests that matched no service
	tls       bool
	httpsPort int // for redirects from plain-HTTP listeners
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := getResponseWriter(w, r)
	// ReverseProxy aborts with a panic when a response breaks off mid-body;
	// the request is still counted and logged.
	defer h.finish(rw, start)
	h.route(rw, r)
	rw.done = true
}

func (h *handler) route(rw *responseWriter, r *http.Request) {
	host := normalizeHost(r.Host)
	if r.TLS != nil && r.TLS.ServerName != "" && !sameName(r.TLS.ServerName, host) {
		writeError(rw, r, http.StatusMisdirectedRequest)
		return
	}
	path := r.URL.Path
	if path == "" || path[0] != '/' || hasDotDot(path) {
		writeError(rw, r, http.StatusBadRequest)
		return
	}
	rt, _ := h.table.lookup(host, path)
	if rt == nil || rt.denied {
		writeError(rw, r, http.StatusNotFound)
		return
	}
	rw.route = rt
	if !h.tls && !rt.svc.cfg.AllowHTTP {
		h.redirect(rw, r, host)
		return
	}
	rt.svc.serve(rw, r)
}

// finish counts and logs the request, and recycles rw unless the handler is
// panicking.
func (h *handler) finish(rw *responseWriter, start time.Time) {
	d := time.Since(start)
	code := rw.code()
	cm := h.unknown
	service := ""
	if rw.route != nil {
		cm = rw.route.cm
		service = rw.route.svc.cfg.Name
		if o := rw.route.svc.observe; o != nil {
			o(code, d)
		}
	}
	cm.observe(code, d.Seconds())
	if a := h.g.access; a != nil && a.Enabled(context.Background(), slog.LevelInfo) {
		r := rw.req
		backend := ""
		if rw.backend != nil {
			backend = rw.backend.name
		}
		a.LogAttrs(context.Background(), slog.LevelInfo, "request",
			slog.String("client", clientIP(r.RemoteAddr)),
			slog.String("method", r.Method),
			slog.String("host", r.Host),
			slog.String("path", r.URL.Path),
			slog.Int("status", code),
			slog.Int64("bytes", rw.bytes),
			slog.Duration("duration", d),
			slog.String("service", service),
			slog.String("class", h.class.String()),
			slog.String("backend", backend),
		)
	}
	if rw.done {
		putResponseWriter(rw)
	}
}

// redirect sends a plain-HTTP request to the same URL over HTTPS.
func (h *handler) redirect(w http.ResponseWriter, r *http.Request, host string) {
	var b strings.Builder
	b.WriteString("https://")
	if strings.IndexByte(host, ':') >= 0 {
		b.WriteString("[" + host + "]")
	} else {
		b.WriteString(host)
	}
	if h.httpsPort != 0 && h.httpsPort != 443 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(h.httpsPort))
	}
	b.WriteString(r.URL.RequestURI())
	w.Header()["Location"] = []string{b.String()}
	w.WriteHeader(http.StatusPermanentRedirect)
}

// clientIP is the address part of a RemoteAddr ("ip:port" or "[ip]:port").
func clientIP(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return remote
	}
	return host
}

// responseWriter records what the handler answered, for metrics and the
// access log, and carries the state of one request through the proxy's
// error handler (which gets it back as its ResponseWriter).
type responseWriter struct {
	http.ResponseWriter
	req      *http.Request
	status   int
	bytes    int64
	hijacked bool
	done     bool // the handler returned normally: rw may be reused
	route    *route
	backend  *backend
	retried  bool
}

var responseWriters = sync.Pool{New: func() any { return new(responseWriter) }}

func getResponseWriter(w http.ResponseWriter, r *http.Request) *responseWriter {
	rw := responseWriters.Get().(*responseWriter)
	rw.ResponseWriter, rw.req = w, r
	return rw
}

func putResponseWriter(rw *responseWriter) {
	*rw = responseWriter{}
	responseWriters.Put(rw)
}

func (rw *responseWriter) code() int {
	switch {
	case rw.status != 0:
		return rw.status
	case rw.hijacked:
		return http.StatusSwitchingProtocols
	case rw.req.Context().Err() != nil:
		return 499 // the client went away before an answer
	default:
		return http.StatusOK
	}
}

func (rw *responseWriter) WriteHeader(code int) {
	if rw.status == 0 && code >= 200 {
		rw.status = code
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *responseWriter) Write(p []byte) (int, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	n, err := rw.ResponseWriter.Write(p)
	rw.bytes += int64(n)
	return n, err
}

// Flush is here so that http.ResponseController and ReverseProxy find it
// without walking Unwrap.
func (rw *responseWriter) Flush() {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	if f, ok := rw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack hands the connection to the proxy for protocol upgrades (websockets).
func (rw *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(rw.ResponseWriter).Hijack()
	if err == nil {
		rw.hijacked = true
	}
	return c, brw, err
}

// Unwrap lets http.ResponseController reach the server's writer.
func (rw *responseWriter) Unwrap() http.ResponseWriter { return rw.ResponseWriter }
