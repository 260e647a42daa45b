package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The lean HTTP/1.1 upstream path: for http:// backends, the whole upstream
// exchange (write the request, read the response, copy the body) runs in the
// handler's goroutine on a pooled connection. http.Transport hands every
// request to a connection's write loop and reads the response in its read
// loop; those goroutine handoffs were most of the proxy's CPU per request.
// Upgrades (websockets), CONNECT and https:// backends keep using
// httputil.ReverseProxy with the backend's Transport.

const (
	h1MaxIdle        = 1024
	h1IdleTimeout    = 90 * time.Second
	h1BufSize        = 4 << 10
	h1MaxHeaderBytes = 10 << 20 // what http.Transport allows by default
	h1Max1xx         = 16
)

// aLongTimeAgo is a deadline in the past: it makes blocked I/O return at once.
var aLongTimeAgo = time.Unix(1, 0)

// h1Pool is a backend's idle connections, most recently used on top.
type h1Pool struct {
	addr   string
	dialer *net.Dialer
	mu     sync.Mutex
	idle   []*h1Conn // oldest first
	closed bool
}

// h1Conn is one upstream connection. Its bufio.Reader reads through the
// h1Conn itself, which counts bytes (to tell "nothing came back" from a
// broken response) and bounds the size of response headers.
type h1Conn struct {
	conn    net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	used    time.Time // when it went idle
	reused  bool      // it served a request before
	nread   int64     // bytes read in the current exchange
	limit   int64     // bytes that may still be read (header limit)
	aborted atomic.Bool
	abortFn func() // pc.abort, allocated once
}

func (pc *h1Conn) Read(p []byte) (int, error) {
	if pc.limit <= 0 {
		return 0, errHeadersTooLarge
	}
	if int64(len(p)) > pc.limit {
		p = p[:pc.limit]
	}
	n, err := pc.conn.Read(p)
	pc.nread += int64(n)
	pc.limit -= int64(n)
	return n, err
}

// abort runs when the client's request context ends: blocked reads and
// writes on the upstream connection return at once.
func (pc *h1Conn) abort() {
	pc.aborted.Store(true)
	_ = pc.conn.SetDeadline(aLongTimeAgo)
}

// setReadDeadline changes the read deadline without undoing an abort that
// raced with it.
func (pc *h1Conn) setReadDeadline(t time.Time) {
	_ = pc.conn.SetReadDeadline(t)
	if pc.aborted.Load() {
		_ = pc.conn.SetDeadline(aLongTimeAgo)
	}
}

var (
	errHeadersTooLarge = errors.New("backend response headers too large")
	errUnaskedSwitch   = errors.New("backend switched protocols (101) without an upgrade request")
)

// h1HeaderTimeout is Limits.BackendHeaderTimeout running out: a timeout
// (504), in the words http.Transport uses.
type h1HeaderTimeout struct{}

func (h1HeaderTimeout) Error() string   { return "timeout awaiting response headers" }
func (h1HeaderTimeout) Timeout() bool   { return true }
func (h1HeaderTimeout) Temporary() bool { return true }

// clientBodyError is a failure to read the client's request body: not the
// backend's fault.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string {
	return "reading the client's request body: " + e.err.Error()
}
func (e *clientBodyError) Unwrap() error { return e.err }

func newH1Pool(addr string, dialer *net.Dialer) *h1Pool {
	return &h1Pool{addr: addr, dialer: dialer}
}

// get returns an idle connection, or a new one. An idle connection is
// checked first (a non-blocking peek): one the backend closed is dropped,
// and so is one with unread bytes. Those can only be an answer to no
// request, such as a body after a response to HEAD or a 204 from a backend
// that sends one anyway; read as the answer to the next request, they
// would reach another client (response desync). fresh: dial, whatever is
// idle.
func (p *h1Pool) get(ctx context.Context, fresh bool) (*h1Conn, error) {
	if !fresh {
		now := time.Now()
		p.mu.Lock()
		for n := len(p.idle); n > 0; n = len(p.idle) {
			pc := p.idle[n-1]
			p.idle[n-1] = nil
			p.idle = p.idle[:n-1]
			if now.Sub(pc.used) > h1IdleTimeout {
				// The newest is too old: so are all the others.
				old := p.idle
				p.idle = nil
				p.mu.Unlock()
				pc.conn.Close()
				for _, o := range old {
					o.conn.Close()
				}
				p.mu.Lock()
				break
			}
			p.mu.Unlock()
			if connAlive(pc.conn) {
				return pc, nil
			}
			pc.conn.Close()
			p.mu.Lock()
		}
		p.mu.Unlock()
	}
	c, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	pc := &h1Conn{conn: c, bw: bufio.NewWriterSize(c, h1BufSize)}
	pc.br = bufio.NewReaderSize(pc, h1BufSize)
	pc.abortFn = pc.abort
	return pc, nil
}

// put makes pc idle, or closes it when the pool is full or closed.
func (p *h1Pool) put(pc *h1Conn) {
	pc.used = time.Now()
	pc.reused = true
	p.mu.Lock()
	if p.closed || len(p.idle) >= h1MaxIdle {
		p.mu.Unlock()
		pc.conn.Close()
		return
	}
	p.idle = append(p.idle, pc)
	p.mu.Unlock()
}

// reap closes connections idle for longer than the idle timeout.
func (p *h1Pool) reap(now time.Time) {
	p.mu.Lock()
	i := 0
	for i < len(p.idle) && now.Sub(p.idle[i].used) > h1IdleTimeout {
		i++
	}
	var old []*h1Conn
	if i > 0 {
		old = make([]*h1Conn, i)
		copy(old, p.idle[:i])
		n := copy(p.idle, p.idle[i:])
		clear(p.idle[n:])
		p.idle = p.idle[:n]
	}
	p.mu.Unlock()
	for _, pc := range old {
		pc.conn.Close()
	}
}

// close closes idle connections; connections in use are closed when their
// request ends.
func (p *h1Pool) close() {
	p.mu.Lock()
	p.closed = true
	old := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, pc := range old {
		pc.conn.Close()
	}
}

// idleCount is for tests.
func (p *h1Pool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// useLean reports whether r goes through the lean path on b.
func (b *backend) useLean(r *http.Request) bool {
	return b.h1 != nil && r.Method != http.MethodConnect && r.Header["Upgrade"] == nil
}

// hasBody reports whether r has a request body to forward.
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// replayable reports whether r may be sent again after a pooled connection
// failed without an answer: no body, and idempotent (http.Transport's rule).
func replayable(r *http.Request) bool {
	if hasBody(r) {
		return false
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return r.Header["Idempotency-Key"] != nil || r.Header["X-Idempotency-Key"] != nil
}

// serveLean proxies r to b over HTTP/1.1 in the calling goroutine.
func (b *backend) serveLean(rw *responseWriter, r *http.Request) {
	ctx := r.Context()
	replay := replayable(r)
	var (
		pc  *h1Conn
		res *http.Response
		err error
	)
	for attempt := 0; ; attempt++ {
		// A pooled connection the backend closes between the check and
		// the write fails the request: replayable ones retry on a fresh
		// connection.
		pc, err = b.h1.get(ctx, attempt > 0)
		if err != nil {
			b.proxyError(rw, r, err)
			return
		}
		stop := context.AfterFunc(ctx, pc.abortFn)
		var bodyTouched bool
		res, bodyTouched, err = b.roundTrip(pc, r, rw)
		if err == nil {
			b.forward(rw, r, pc, res, stop)
			return
		}
		stop()
		pc.conn.Close()
		var cbe *clientBodyError
		switch {
		case errors.As(err, &cbe):
			// Before the context: a failed body read cancels it too.
			b.log.Debug("client request body failed", "error", err)
			if rw.status == 0 {
				writeError(rw, r, http.StatusBadRequest)
			}
			return
		case ctx.Err() != nil:
			b.log.Debug("client went away", "error", err)
			return
		case attempt == 0 && pc.reused && pc.nread == 0 && !bodyTouched && replay && !isTimeout(err):
			// The backend closed an idle connection: try a new one.
			b.log.Debug("pooled connection failed, retrying on a new one", "error", err)
			continue
		}
		b.proxyError(rw, r, err)
		return
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// roundTrip writes r on pc and reads the response headers; 1xx responses
// other than 100 are passed on to the client as they come.
func (b *backend) roundTrip(pc *h1Conn, r *http.Request, w http.ResponseWriter) (res *http.Response, bodyTouched bool, err error) {
	pc.nread = 0
	pc.limit = math.MaxInt64
	body := hasBody(r)
	b.writeHead(pc.bw, r, body)
	if body {
		bodyTouched = true
		if err := writeBody(pc.bw, r); err != nil {
			var cbe *clientBodyError
			if errors.As(err, &cbe) {
				return nil, true, err
			}
			// The backend may have answered early (413, 401…) and closed:
			// pass that answer on if it is there.
			pc.setReadDeadline(time.Now().Add(time.Second))
			if res, rerr := readResponse(pc, r, nil); rerr == nil {
				res.Close = true
				return res, true, nil
			}
			return nil, true, err
		}
	}
	if err := pc.bw.Flush(); err != nil {
		return nil, bodyTouched, err
	}
	if b.headerTimeout > 0 {
		pc.setReadDeadline(time.Now().Add(b.headerTimeout))
	}
	res, err = readResponse(pc, r, w)
	if b.headerTimeout > 0 {
		if err != nil && !pc.aborted.Load() && isTimeout(err) {
			err = h1HeaderTimeout{}
		}
		if err == nil {
			pc.setReadDeadline(time.Time{})
		}
	}
	return res, bodyTouched, err
}

// readResponse reads the final response headers from pc. 1xx responses
// (except 100 Continue, which the client's server already handled) go to
// w when it is not nil, as ReverseProxy does.
func readResponse(pc *h1Conn, r *http.Request, w http.ResponseWriter) (*http.Response, error) {
	for range h1Max1xx {
		pc.limit = h1MaxHeaderBytes
		res, err := http.ReadResponse(pc.br, r)
		if err != nil {
			return nil, err
		}
		if res.StatusCode >= 200 {
			pc.limit = math.MaxInt64
			return res, nil
		}
		if res.StatusCode == http.StatusSwitchingProtocols {
			// The lean path never asks for an upgrade (those go through
			// ReverseProxy). Passed on, the connection would go back to
			// the pool in the backend's new protocol, and its bytes to
			// the next client whose request it carries.
			return nil, errUnaskedSwitch
		}
		if res.StatusCode != http.StatusContinue && w != nil {
			h := w.Header()
			copyHeader(h, res.Header)
			w.WriteHeader(res.StatusCode)
			clear(h)
		}
	}
	return nil, errors.New("too many 1xx responses from the backend")
}

// writeHead writes the request line and headers: the client's end-to-end
// headers, the forwarding headers setForwarded would set, and the framing of
// the body.
func (b *backend) writeHead(bw *bufio.Writer, r *http.Request, body bool) {
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	u := r.URL
	if u.Opaque != "" {
		bw.WriteString(u.RequestURI())
	} else {
		p := u.EscapedPath()
		if p == "" {
			p = "/"
		}
		bw.WriteString(p)
		if q := cleanQuery(u.RawQuery); q != "" || u.ForceQuery {
			bw.WriteByte('?')
			bw.WriteString(q)
		}
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	host := r.Host
	if host == "" {
		host = b.url.Host
	}
	bw.WriteString(host)
	bw.WriteString("\r\n")
	conn := r.Header["Connection"]
	for k, vv := range r.Header {
		if skipRequestHeader(k) || conn != nil && connectionListed(conn, k) || spoofableAlias(k) {
			continue
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	if headerHasToken(r.Header["Te"], "trailers") {
		bw.WriteString("Te: trailers\r\n")
	}
	ip, proto, fhost := forwardedFields(r)
	writeField(bw, "X-Forwarded-For", ip)
	writeField(bw, "X-Real-Ip", ip)
	writeField(bw, "X-Forwarded-Proto", proto)
	writeField(bw, "X-Forwarded-Host", fhost)
	writeField(bw, "Forwarded", forwardedValue(ip, proto, fhost))
	switch {
	case body && r.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		var num [20]byte
		bw.Write(strconv.AppendInt(num[:0], r.ContentLength, 10))
		bw.WriteString("\r\n")
	case body:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
		first := true
		for k := range r.Trailer {
			if dropTrailer(k) {
				continue
			}
			if first {
				bw.WriteString("Trailer: ")
			} else {
				bw.WriteString(", ")
			}
			first = false
			bw.WriteString(k)
		}
		if !first {
			bw.WriteString("\r\n")
		}
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		// As http.Transport: many servers expect a length on POST and PUT.
		bw.WriteString("Content-Length: 0\r\n")
	}
	bw.WriteString("\r\n")
}

// writeField writes one header line. The client's server rejected values
// with CR or LF already; this makes sure none reaches the backend.
func writeField(bw *bufio.Writer, k, v string) {
	if strings.IndexByte(v, '\n') >= 0 || strings.IndexByte(v, '\r') >= 0 {
		v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

// skipRequestHeader: hop-by-hop headers (RFC 9110 7.6.1, the list
// ReverseProxy removes), the framing the proxy writes itself, Expect (the
// client's server answers 100 Continue when the body is read), and the
// forwarding headers clients could spoof.
func skipRequestHeader(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Host", "Content-Length", "Expect":
		return true
	case "X-Real-Ip", "X-Forwarded-Port", "X-Forwarded-Server", "X-Forwarded-Prefix",
		"X-Client-Ip", "True-Client-Ip", "Cf-Connecting-Ip", "X-Cluster-Client-Ip", "X-Original-Forwarded-For",
		"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
		return true
	}
	return false
}

// spoofableAlias reports whether k, a header name with an underscore,
// names a forwarding header once its underscores are read as dashes. CGI,
// PHP and WSGI backends see X_Real_IP and X-Real-IP both as HTTP_X_REAL_IP,
// and may take the client's value over the gateway's.
func spoofableAlias(k string) bool {
	if strings.IndexByte(k, '_') < 0 {
		return false
	}
	k = http.CanonicalHeaderKey(strings.ReplaceAll(k, "_", "-"))
	return slices.Contains(spoofable, k)
}

// dropTrailer reports whether a client's request trailer k stays behind:
// what may not be a header is not sent as a trailer either (backends that
// merge trailers into headers would take a trailing X-Real-IP as the
// client address). Undeclared trailers are in r.Trailer too, once the body
// has been read.
func dropTrailer(k string) bool {
	return skipRequestHeader(k) || spoofableAlias(k)
}

// dropH2CUpgrade removes a client's offer to switch to cleartext HTTP/2
// (Upgrade: h2c, RFC 7540 3.2), which is for the server the client talks
// to, never for a backend behind it. Passed on, a backend that accepts it
// turns the client's connection into an HTTP/2 tunnel to the backend: every
// further request in it reaches the backend unrouted (any path, whatever
// the service's path prefix), unlogged, and with forwarding headers of the
// client's choosing (h2c smuggling). Without it the request is proxied as
// an ordinary one.
func dropH2CUpgrade(h http.Header) {
	if headerHasToken(h["Upgrade"], "h2c") {
		delete(h, "Upgrade")
		delete(h, "Http2-Settings")
	}
}

// connectionListed reports whether header k is named in the Connection
// header values conn.
func connectionListed(conn []string, k string) bool {
	for _, v := range conn {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(tok), k) {
				return true
			}
		}
	}
	return false
}

func headerHasToken(vals []string, token string) bool {
	for _, v := range vals {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			tok, _, _ = strings.Cut(tok, ";")
			if strings.EqualFold(strings.TrimSpace(tok), token) {
				return true
			}
		}
	}
	return false
}

// hopHeaders are the response headers not passed on (besides those named
// in Connection).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// removeHopByHop removes hop-by-hop headers from h, as ReverseProxy does.
func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for f != "" {
			var tok string
			tok, f, _ = strings.Cut(f, ",")
			if tok = strings.TrimSpace(tok); tok != "" {
				h.Del(tok)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

func copyHeader(dst, src http.Header) {
	for k, vv := range src {
		if dst[k] == nil {
			dst[k] = vv
		} else {
			dst[k] = append(dst[k], vv...)
		}
	}
}

// cleanQuery is ReverseProxy's cleanQueryParams: a query Go would not parse
// the same way as the backend (semicolons, bad escapes) is re-encoded.
func cleanQuery(s string) string {
	reencode := func(s string) string {
		v, _ := url.ParseQuery(s)
		return v.Encode()
	}
	if strings.Count(s, "&")+1 > 10000 {
		return reencode(s)
	}
	for i := 0; i < len(s); {
		switch s[i] {
		case ';':
			return reencode(s)
		case '%':
			if i+2 >= len(s) || !ishex(s[i+1]) || !ishex(s[i+2]) {
				return reencode(s)
			}
			i += 3
		default:
			i++
		}
	}
	return s
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// writeBody copies the client's body to bw: exactly Content-Length bytes,
// or chunked (with trailers) when the length is unknown.
func writeBody(bw *bufio.Writer, r *http.Request) error {
	buf := bufferPool.Get()
	defer bufferPool.Put(buf)
	if r.ContentLength > 0 {
		remain := r.ContentLength
		for remain > 0 {
			p := buf
			if int64(len(p)) > remain {
				p = p[:remain]
			}
			n, err := r.Body.Read(p)
			if n > 0 {
				if _, werr := bw.Write(p[:n]); werr != nil {
					return werr
				}
				remain -= int64(n)
			}
			if err == io.EOF && remain > 0 {
				return &clientBodyError{io.ErrUnexpectedEOF}
			}
			if err != nil && err != io.EOF {
				return &clientBodyError{err}
			}
		}
		return nil
	}
	cw := httputil.NewChunkedWriter(bw)
	for {
		n, err := r.Body.Read(buf)
		if n > 0 {
			if _, werr := cw.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return &clientBodyError{err}
		}
	}
	if err := cw.Close(); err != nil { // "0\r\n"
		return err
	}
	for k, vv := range r.Trailer {
		if dropTrailer(k) {
			continue
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	_, err := bw.WriteString("\r\n")
	return err
}

// forward passes res on to the client and recycles or closes pc. stop
// unregisters the client-cancellation hook.
func (b *backend) forward(rw *responseWriter, r *http.Request, pc *h1Conn, res *http.Response, stop func() bool) {
	removeHopByHop(res.Header)
	h := rw.Header()
	copyHeader(h, res.Header)
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		h["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	rw.WriteHeader(res.StatusCode)

	flush := res.ContentLength == -1 || isEventStream(res.Header["Content-Type"])
	eof, err := copyResponse(rw, res.Body, flush)
	ok := stop()
	if err != nil {
		pc.conn.Close()
		if r.Context().Err() == nil {
			b.log.Debug("response body copy failed", "error", err)
		}
		// As ReverseProxy: a response cut off mid-body must not look
		// complete to the client. Only an http.Server recovers the panic.
		if r.Context().Value(http.ServerContextKey) != nil {
			panic(http.ErrAbortHandler)
		}
		return
	}
	if eof && ok && !res.Close && pc.br.Buffered() == 0 && !pc.aborted.Load() {
		b.h1.put(pc)
	} else {
		pc.conn.Close()
	}
	if len(res.Trailer) > 0 {
		// Force chunking: the trailers need it.
		rw.Flush()
	}
	if len(res.Trailer) == announced {
		copyHeader(h, res.Trailer)
		return
	}
	for k, vv := range res.Trailer {
		k = http.TrailerPrefix + k
		for _, v := range vv {
			h.Add(k, v)
		}
	}
}

func isEventStream(ct []string) bool {
	if len(ct) == 0 {
		return false
	}
	v := strings.TrimSpace(ct[0])
	const es = "text/event-stream"
	if len(v) < len(es) || !strings.EqualFold(v[:len(es)], es) {
		return false
	}
	rest := strings.TrimSpace(v[len(es):])
	return rest == "" || rest[0] == ';'
}

// copyResponse copies body to w with a pooled buffer, flushing after each
// write when flush is set. eof: the body was read to its end.
func copyResponse(w *responseWriter, body io.Reader, flush bool) (eof bool, err error) {
	if body == http.NoBody {
		return true, nil
	}
	buf := bufferPool.Get()
	defer bufferPool.Put(buf)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			if werr == nil && m != n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return false, werr
			}
			if flush {
				w.Flush()
			}
		}
		if rerr == io.EOF {
			return true, nil
		}
		if rerr != nil {
			return false, rerr
		}
	}
}
