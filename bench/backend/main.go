// Command backend is the origin server of the HTTP benchmarks: it answers
// every request with the same 1 KiB body over HTTP/1.1 keep-alive, and does as
// little work as it can so that the proxies in front of it are what is measured.
//
//	go run ./bench/backend -addr 127.0.0.1:18080
package main

import (
	"bytes"
	"flag"
	"log"
	"net/http"
	"strconv"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "listen address (loopback)")
	size := flag.Int("size", 1024, "response body size in bytes")
	flag.Parse()

	body := bytes.Repeat([]byte("x"), *size)
	length := []string{strconv.Itoa(len(body))}
	ctype := []string{"text/plain"}

	srv := &http.Server{
		Addr: *addr,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Setting the map entries directly skips canonicalisation work.
			h := w.Header()
			h["Content-Length"] = length
			h["Content-Type"] = ctype
			_, _ = w.Write(body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	log.Printf("backend: %d-byte bodies on %s", len(body), *addr)
	log.Fatal(srv.ListenAndServe())
}
