package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestPublicPathAbuse is a stranger on the internet trying the public path
// (client → labgate relay → labgate serve) with crafted bytes: a private
// service must stay out of reach whatever the Host looks like, and the
// client's address the backend sees is the one the relay saw, whatever
// the client sends itself.
func TestPublicPathAbuse(t *testing.T) {
	l := startLab(t)
	relayHTTPS, relayHTTP := addr(l.relay, 443), addr(l.relay, 80)

	t.Run("private-host-spellings", func(t *testing.T) {
		// TLS for the public name, then a request line naming the private
		// one in every way HTTP/1.1 allows.
		for _, req := range []string{
			"GET / HTTP/1.1\r\nHost: vault.lab.test\r\n\r\n",
			"GET / HTTP/1.1\r\nHost: VAULT.lab.test\r\n\r\n",
			"GET / HTTP/1.1\r\nHost: vault.lab.test.\r\n\r\n",
			"GET / HTTP/1.1\r\nHost: vault.lab.test:443\r\n\r\n",
			"GET https://vault.lab.test/ HTTP/1.1\r\nHost: www.lab.test\r\n\r\n",
			"GET / HTTP/1.1\r\nHost: vault.lab.test\r\nHost: www.lab.test\r\n\r\n",
		} {
			status, s := l.tlsExchange(t, relayHTTPS, "www.lab.test", req)
			if status < 400 || s.Host != "" {
				t.Errorf("%q through the relay: %d, backend saw %+v; want an error from the gateway", req, status, s)
			}
		}
		// SNI of the private name itself, and none at all.
		for _, sni := range []string{"vault.lab.test", ""} {
			status, s := l.tlsExchange(t, relayHTTPS, sni, "GET / HTTP/1.1\r\nHost: vault.lab.test\r\n\r\n")
			if status != 0 && status < 400 || s.Host != "" { // 0: no handshake
				t.Errorf("SNI %q, Host vault through the relay: %d, backend saw %+v", sni, status, s)
			}
		}
		// Plain HTTP, absolute form.
		got, _ := l.exchange(relayHTTP, []byte("GET http://vault.lab.test/ HTTP/1.1\r\nHost: www.lab.test\r\nConnection: close\r\n\r\n"))
		if !strings.HasPrefix(string(got), "HTTP/1.1 404") {
			t.Errorf("absolute-form private URI on port 80: %.60q, want 404", got)
		}
	})

	t.Run("forged-client-address", func(t *testing.T) {
		// A PROXY header of the client's own, inside the stream the relay
		// forwards behind its header: the gateway reads it as HTTP, which it
		// is not.
		got, _ := l.exchange(relayHTTP, []byte("PROXY TCP4 192.0.2.7 203.0.113.7 40000 80\r\nGET / HTTP/1.1\r\nHost: www.lab.test\r\n\r\n"))
		if !strings.HasPrefix(string(got), "HTTP/1.1 400") {
			t.Errorf("a second PROXY header through the relay: %.60q, want 400", got)
		}
		// Client IP headers, also spelled with underscores and sent as
		// hop-by-hop (Connection) to strip the gateway's own.
		status, s := l.tlsExchange(t, relayHTTPS, "www.lab.test", "GET / HTTP/1.1\r\nHost: www.lab.test\r\n"+
			"X-Real-IP: 192.0.2.7\r\nX_Real_IP: 192.0.2.7\r\nX-Forwarded-For: 192.0.2.7\r\nForwarded: for=192.0.2.7\r\n"+
			"Connection: X-Real-IP, X-Forwarded-For, Forwarded\r\n\r\n")
		if status != 200 || s.XForwardedFor != l.client.String() || s.XRealIP != l.client.String() {
			t.Errorf("forged client IP headers: %d, backend saw %+v; want the client's %s", status, s, l.client)
		}
	})

	t.Run("slow-client-hello", func(t *testing.T) {
		// The relay waits 1s for a ClientHello, then forwards without
		// peeking; the gateway still takes the handshake and the client's
		// address comes from the relay's header.
		c, err := l.n.DialContext("client")(context.Background(), "tcp", relayHTTPS)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		time.Sleep(1500 * time.Millisecond)
		tc := tls.Client(c, &tls.Config{ServerName: "www.lab.test", RootCAs: l.roots, NextProtos: []string{"http/1.1"}})
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		status, s := roundTrip(t, tc, "GET / HTTP/1.1\r\nHost: www.lab.test\r\n\r\n")
		if status != 200 || s.XForwardedFor != l.client.String() {
			t.Errorf("after a slow ClientHello: %d, backend saw %+v", status, s)
		}
	})
}

// tlsExchange opens a TLS connection with sni from the client host to dst,
// writes req and returns the answer's status and what the backend saw.
func (l *lab) tlsExchange(t *testing.T, dst, sni, req string) (int, seen) {
	t.Helper()
	c, err := l.n.DialContext("client")(context.Background(), "tcp", dst)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := tls.Client(c, &tls.Config{ServerName: sni, RootCAs: l.roots, InsecureSkipVerify: sni == "", NextProtos: []string{"http/1.1"}})
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		return 0, seen{} // refused before any HTTP
	}
	return roundTrip(t, tc, req)
}

// roundTrip writes req on c and reads one answer.
func roundTrip(t *testing.T, c io.ReadWriter, req string) (int, seen) {
	t.Helper()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: %v", req, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	var s seen
	if res.Header.Get("Content-Type") == "application/json" {
		if err := json.Unmarshal(body, &s); err != nil {
			t.Fatal(fmt.Errorf("%q: %w in %q", req, err, body))
		}
	}
	return res.StatusCode, s
}
