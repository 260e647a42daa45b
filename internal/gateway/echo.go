package gateway

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// serveEcho answers with what the gateway saw and what a backend would get:
// for trying labgate out and for checking a relay's PROXY headers.
func serveEcho(w http.ResponseWriter, r *http.Request, service string) {
	var b strings.Builder
	line := func(k, v string) {
		b.WriteString(k)
		b.WriteString(": ")
		b.WriteString(v)
		b.WriteByte('\n')
	}
	b.WriteString("labgate echo: this is what labgate saw, and what a backend would get.\n\n")
	line("service", service)
	line("client", clientIP(r.RemoteAddr))
	line("method", r.Method)
	line("host", r.Host)
	line("uri", r.RequestURI)
	line("proto", r.Proto)
	if r.TLS != nil {
		line("tls server name", r.TLS.ServerName)
		line("tls alpn", r.TLS.NegotiatedProtocol)
	}
	h := r.Header.Clone()
	setForwarded(h, r)
	b.WriteString("\nrequest headers a backend would get:\n")
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			line("  "+k, v)
		}
	}
	body := b.String()
	w.Header()["Content-Type"] = ctText
	w.Header()["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.Header()["X-Content-Type-Options"] = nosniff
	w.Header()["Cache-Control"] = noStore
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(body))
	} else {
		w.WriteHeader(http.StatusOK)
	}
}
