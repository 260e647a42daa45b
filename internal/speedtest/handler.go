// Package speedtest measures the relay path, the way every public request
// takes: from the gateway over the VPN to the relay and back.
//
// The relay serves Handler on its VPN address, to the gateway alone. The
// gateway runs a Prober, which every interval (give or take 10%) measures the
// round trip of a few tiny requests, then downloads and uploads its budget of
// bytes, half each way, and keeps the results as metrics and as a bounded
// history persisted to a file.
package speedtest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
)

// MaxBytes is the most one request moves: Handler refuses larger downloads
// and uploads.
const MaxBytes = 64 << 20

// Handler serves the relay's side of the measurement to the sources allow
// accepts (the gateway's VPN address); everyone else gets 403.
//
//	GET  /ping          204, nothing else
//	GET  /down?bytes=N  N incompressible bytes, N at most MaxBytes
//	POST /up            reads and discards the body (at most MaxBytes), answers its length
func Handler(allow func(netip.Addr) bool) http.Handler {
	buf := make([]byte, 64<<10)
	_, _ = rand.Read(buf) // random, so that nothing on the way can compress it
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /down", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
		if err != nil || n < 0 || n > MaxBytes {
			http.Error(w, fmt.Sprintf("bytes: want a number from 0 to %d", MaxBytes), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		for n > 0 {
			k := min(n, int64(len(buf)))
			if _, err := w.Write(buf[:k]); err != nil {
				return
			}
			n -= k
		}
	})
	mux.HandleFunc("POST /up", func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > MaxBytes {
			http.Error(w, fmt.Sprintf("at most %d bytes", MaxBytes), http.StatusRequestEntityTooLarge)
			return
		}
		n, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, MaxBytes))
		if tooBig := (*http.MaxBytesError)(nil); errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("at most %d bytes", MaxBytes), http.StatusRequestEntityTooLarge)
			return
		} else if err != nil {
			http.Error(w, fmt.Sprintf("after %d bytes: %v", n, err), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%d\n", n)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil || !allow(ap.Addr().Unmap()) {
			http.Error(w, "forbidden: only the gateway measures the relay path", http.StatusForbidden)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		mux.ServeHTTP(w, r)
	})
}
