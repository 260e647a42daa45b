package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/proxyproto"
	"github.com/labgate/labgate/internal/testnet"
)

// labgate is the binary under test, built once by TestMain.
var labgate string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "labgate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	labgate = filepath.Join(dir, "labgate")
	// From the module root (this package is internal/e2e). `go test` puts
	// its own toolchain first on PATH.
	cmd := exec.Command("go", "build", "-o", labgate, "./cmd/labgate")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building labgate: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// Ports. Each host is a namespace of its own, so fixed ports never clash
// with anything on the machine, and root inside it may bind low ones.
const (
	pubHTTPS  = 10443 // gateway.public.https, reached only through the relay
	pubHTTP   = 10080
	privHTTPS = 443 // gateway.private.https, for LAN/VPN clients
	privHTTP  = 80
	tcpPort   = 2525 // the public tcp service (PROXY v2 to its backend)
	udpPort   = 3478 // the public udp service
	webPort   = 8080 // the backend's HTTP server
)

// lanClient is a second address of the client host, the only source the
// gateway's private listeners admit: the client's own address is a stranger
// on the internet, this one a device on the LAN.
var lanClient = netip.MustParseAddr("10.77.0.200")

// lab is the running setup: four hosts, labgate serve on "gateway", labgate
// relay on "relay", backends on "backend".
type lab struct {
	n                         *testnet.Net
	client, relay, gw, backnd netip.Addr
	roots                     *x509.CertPool
	gateway, relayProc        *testnet.Proc
	udpSeen                   sync.Map // netip.AddrPort: sources in the udp backend's PROXY headers
}

const labYAML = `version: 1
domain: lab.test
state_dir: %[1]s
log: { format: text, level: info, access: true }
relay:
  listen: %[2]s
  gateway: %[3]s
  admin: "127.0.0.1:9181"
gateway:
  public:
    https: "%[3]s:%[5]d"
    http: "%[3]s:%[6]d"
    trusted_relays: [%[2]s/32]
  private:
    https: ["%[3]s:%[7]d"]
    http: ["%[3]s:%[8]d"]
    allow: [%[9]s/32]
  admin: "127.0.0.1:9180"
services:
  - { name: www, host: www, expose: public, backend: "http://%[4]s:%[10]d" }
  - { name: vault, host: vault, backend: "http://%[4]s:%[10]d" }
  - name: mail
    expose: public
    tcp: [{ port: %[11]d, backend: "%[4]s:%[11]d", proxy_protocol: v2 }]
  - name: game
    expose: public
    udp: [{ port: %[12]d, backend: "%[4]s:%[12]d", proxy_protocol: v2 }]
`

// startLab makes the hosts, starts the backends, the gateway and the relay,
// and returns once all of them accept connections.
func startLab(t *testing.T) *lab {
	n := testnet.New(t, "client", "relay", "gateway", "backend")
	l := &lab{
		n:      n,
		client: n.Addr("client"),
		relay:  n.Addr("relay"),
		gw:     n.Addr("gateway"),
		backnd: n.Addr("backend"),
	}
	n.AddAddr("client", netip.PrefixFrom(lanClient, 24))

	startHTTPBackend(t, n.Listen("backend", "tcp", addr(l.backnd, webPort)))
	startTCPBackend(t, n.Listen("backend", "tcp", addr(l.backnd, tcpPort)))
	startUDPBackend(n.ListenPacket("backend", "udp", addr(l.backnd, udpPort)), &l.udpSeen)

	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	cfg := filepath.Join(dir, "lab.yaml")
	yaml := fmt.Sprintf(labYAML, state, l.relay, l.gw, l.backnd,
		pubHTTPS, pubHTTP, privHTTPS, privHTTP, lanClient, webPort, tcpPort, udpPort)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}

	// The gateway first: the relay probes it. Readiness comes from the logs
	// (both log once every listener is bound), so that nothing knocks on a
	// listener that would log a refusal.
	l.gateway = n.Start("gateway", labgate, "serve", "-c", cfg)
	waitOutput(t, l.gateway, "labgate serving")
	n.WaitTCP("gateway", "127.0.0.1:9180")
	l.roots = caRoots(t, state)

	l.relayProc = n.Start("relay", labgate, "relay", "-c", cfg)
	waitOutput(t, l.relayProc, "labgate relay forwarding")
	n.WaitTCP("relay", "127.0.0.1:9181")
	return l
}

// caRoots waits for the gateway's internal CA root in state and returns it.
func caRoots(t *testing.T, state string) *x509.CertPool {
	t.Helper()
	root := filepath.Join(state, "ca", "root.crt")
	deadline := time.Now().Add(10 * time.Second)
	for {
		pem, err := os.ReadFile(root)
		if err == nil {
			roots := x509.NewCertPool()
			if !roots.AppendCertsFromPEM(pem) {
				t.Fatalf("%s holds no certificate", root)
			}
			return roots
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway wrote no CA root: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitOutput waits until p has written s, and fails the test when p exits
// first or 10s pass.
func waitOutput(t *testing.T, p *testnet.Proc, s string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(p.Output(), s) {
		select {
		case <-p.Done():
			t.Fatalf("%v before writing %q", p.Wait(), s)
		case <-deadline:
			t.Fatalf("no %q in 10s", s)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func addr(a netip.Addr, port int) string {
	return netip.AddrPortFrom(a, uint16(port)).String()
}

// seen is what the HTTP backend reports about a request.
type seen struct {
	RemoteAddr    string
	XForwardedFor string
	XRealIP       string
	Host          string
}

// startHTTPBackend answers every request with what it saw, as JSON.
func startHTTPBackend(t *testing.T, ln net.Listener) {
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(seen{
				RemoteAddr:    r.RemoteAddr,
				XForwardedFor: r.Header.Get("X-Forwarded-For"),
				XRealIP:       r.Header.Get("X-Real-IP"),
				Host:          r.Host,
			})
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
}

// startTCPBackend reads a PROXY header, then answers each line with
// "from SOURCE: LINE" until the peer closes.
func startTCPBackend(t *testing.T, ln net.Listener) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				h, err := proxyproto.Read(br)
				if err != nil {
					fmt.Fprintf(c, "no PROXY header: %v\n", err)
					return
				}
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					fmt.Fprintf(c, "from %s: %s", h.Source, line)
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
}

// startUDPBackend answers each datagram, which must start with a PROXY v2
// header, with "from SOURCE: PAYLOAD", to whoever sent it, and notes each
// SOURCE in seen.
func startUDPBackend(pc net.PacketConn, seen *sync.Map) {
	go func() {
		buf := make([]byte, 64<<10)
		for {
			m, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var reply string
			if h, payload, err := proxyproto.ParseV2Datagram(buf[:m]); err != nil {
				reply = "no PROXY header: " + err.Error()
			} else {
				seen.Store(h.Source, true)
				reply = fmt.Sprintf("from %s: %s", h.Source, payload)
			}
			_, _ = pc.WriteTo([]byte(reply), from)
		}
	}()
}

// httpClient returns a client on the client host whose every connection goes
// to dst, whatever the URL's host (which still gives SNI and Host), and
// verifies certificates against the gateway's internal CA.
func (l *lab) httpClient(dst string) *http.Client {
	dial := l.n.DialContext("client")
	return &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return dial(ctx, network, dst)
			},
			TLSClientConfig:   &tls.Config{RootCAs: l.roots},
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
}

// get fetches url with c and returns the status and what the backend saw
// (zero unless the backend answered).
func get(t *testing.T, c *http.Client, url string, header ...string) (int, seen) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1] // net/http ignores a Host in Header
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	var s seen
	if resp.Header.Get("Content-Type") == "application/json" {
		if err := json.Unmarshal(body, &s); err != nil {
			t.Fatalf("GET %s: %v in %q", url, err, body)
		}
	}
	return resp.StatusCode, s
}

// TestRelayToGateway runs a client, `labgate relay`, `labgate serve` and the
// backends on four hosts of their own, each with its own address, and checks
// that what the backends see is the client's own address, that the relay
// carries only public services, and that the gateway refuses a host that is
// not its relay.
func TestRelayToGateway(t *testing.T) {
	l := startLab(t)
	relayHTTPS := addr(l.relay, 443)

	t.Run("https", func(t *testing.T) {
		// A forged X-Forwarded-For must not survive: the gateway takes the
		// address from the relay's PROXY header.
		code, s := get(t, l.httpClient(relayHTTPS), "https://www.lab.test/", "X-Forwarded-For", "6.6.6.6")
		if code != 200 {
			t.Fatalf("GET https://www.lab.test/ through the relay: %d, want 200 from the backend", code)
		}
		if s.XForwardedFor != l.client.String() {
			t.Errorf("backend saw X-Forwarded-For %q, want the client's own %s", s.XForwardedFor, l.client)
		}
		if s.XRealIP != "" && s.XRealIP != l.client.String() {
			t.Errorf("backend saw X-Real-IP %q, want the client's %s (or none)", s.XRealIP, l.client)
		}
		if host, _, _ := net.SplitHostPort(s.RemoteAddr); host != l.gw.String() {
			t.Errorf("backend's peer is %s, want the gateway %s", s.RemoteAddr, l.gw)
		}
	})

	t.Run("http-redirects", func(t *testing.T) {
		code, _ := get(t, l.httpClient(addr(l.relay, 80)), "http://www.lab.test/")
		if code != http.StatusPermanentRedirect {
			t.Errorf("plain HTTP through the relay: %d, want 308 to HTTPS", code)
		}
	})

	t.Run("tcp", func(t *testing.T) {
		c, err := l.n.DialContext("client")(context.Background(), "tcp", addr(l.relay, tcpPort))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for _, line := range []string{"EHLO client\n", "QUIT\n"} {
			if _, err := io.WriteString(c, line); err != nil {
				t.Fatal(err)
			}
			reply, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("no reply to %q through relay and gateway: %v", line, err)
			}
			// The source port is the client's too, but its ephemeral port is
			// the kernel's choice: compare it with the socket's.
			want := fmt.Sprintf("from %s: %s", c.LocalAddr(), line)
			if reply != want {
				t.Errorf("backend answered %q, want %q (it must see the client in the PROXY header)", reply, want)
			}
		}
	})

	t.Run("private-not-through-relay", func(t *testing.T) {
		// The private service answers a LAN client on the private listener …
		lan := l.lanHTTPClient(addr(l.gw, privHTTPS))
		if code, s := get(t, lan, "https://vault.lab.test/"); code != 200 || s.XForwardedFor != lanClient.String() {
			t.Fatalf("private service from the LAN: %d, X-Forwarded-For %q; want 200 and %s", code, s.XForwardedFor, lanClient)
		}
		// … and never a client that comes through the relay, by SNI and Host:
		// the public listener has no certificate for a private name …
		if resp, err := l.httpClient(relayHTTPS).Get("https://vault.lab.test/"); err == nil {
			resp.Body.Close()
			t.Errorf("private service through the relay: %s, want a failed TLS handshake", resp.Status)
		} else if !strings.Contains(err.Error(), "tls") {
			t.Errorf("private service through the relay: %v, want a failed TLS handshake", err)
		}
		// … nor by Host alone behind a public name's TLS.
		if code, s := get(t, l.httpClient(relayHTTPS), "https://www.lab.test/", "Host", "vault.lab.test"); code < 400 || s != (seen{}) {
			t.Errorf("SNI www, Host vault through the relay: %d (backend saw %+v), want an error from the gateway", code, s)
		}
	})

	t.Run("untrusted-relay-refused", func(t *testing.T) {
		// The client host plays relay: straight to the gateway's public
		// ports, with a PROXY header claiming someone else.
		forged := (&proxyproto.Header{
			Command:     proxyproto.Proxy,
			Transport:   proxyproto.TCP,
			Source:      netip.MustParseAddrPort("192.0.2.7:40000"),
			Destination: netip.AddrPortFrom(l.relay, 443),
		}).AppendV2(nil)
		hello := "GET / HTTP/1.1\r\nHost: www.lab.test\r\n\r\n"
		for _, tc := range []struct {
			port  int
			after string // what follows the header
		}{
			{pubHTTPS, "\x16\x03\x01\x00\x05hello"}, // the start of a TLS record
			{pubHTTP, hello},
			{tcpPort, "EHLO forged\n"},
		} {
			got, err := l.exchange(addr(l.gw, tc.port), append(append([]byte{}, forged...), tc.after...))
			if len(got) > 0 {
				t.Errorf("gateway port %d served a host that is not a trusted relay: %q", tc.port, got)
			}
			if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("gateway port %d: connection from the untrusted host left open (%v), want it closed", tc.port, err)
			}
		}
		// The refusal is logged with the peer's address.
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(l.gateway.Output(), l.client.String()) {
			if time.Now().After(deadline) {
				t.Errorf("the gateway logged no refusal naming %s:\n%s", l.client, l.gateway.Output())
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("udp", func(t *testing.T) {
		var pc net.PacketConn
		err := l.n.Do("client", func() (err error) {
			pc, err = net.ListenPacket("udp4", addr(l.client, 0))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		dst := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr(l.relay, udpPort)))
		buf := make([]byte, 2048)
		// Datagrams may be lost while the gateway's flow comes up: ask a
		// few times.
		var reply string
		for try := 0; try < 20 && reply == ""; try++ {
			if _, err := pc.WriteTo([]byte("ping"), dst); err != nil {
				t.Fatal(err)
			}
			_ = pc.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
			m, from, err := pc.ReadFrom(buf)
			if err != nil {
				continue
			}
			if from.String() != dst.String() {
				t.Errorf("reply from %s, want the relay's %s", from, dst)
			}
			reply = string(buf[:m])
		}
		if reply == "" {
			t.Fatalf("no reply through relay and gateway to a datagram on udp %d", udpPort)
		}
		if want := fmt.Sprintf("from %s: ping", pc.LocalAddr()); reply != want {
			t.Errorf("udp backend answered %q, want %q (it must see the client in the PROXY header)", reply, want)
		}

		// The client host playing relay: a datagram with a forged header
		// straight to the gateway is dropped, and answers nothing.
		forged := (&proxyproto.Header{
			Command:     proxyproto.Proxy,
			Transport:   proxyproto.UDP,
			Source:      netip.MustParseAddrPort("192.0.2.7:40000"),
			Destination: netip.AddrPortFrom(l.relay, udpPort),
		}).AppendV2(nil)
		gw := net.UDPAddrFromAddrPort(netip.AddrPortFrom(l.gw, udpPort))
		if _, err := pc.WriteTo(append(forged, "forged"...), gw); err != nil {
			t.Fatal(err)
		}
		_ = pc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if m, from, err := pc.ReadFrom(buf); err == nil {
			t.Errorf("gateway udp %d answered a host that is not a trusted relay: %q from %s", udpPort, buf[:m], from)
		}
		l.udpSeen.Range(func(src, _ any) bool {
			if src.(netip.AddrPort).Addr() != l.client {
				t.Errorf("udp backend saw a datagram from %v, want only the client's", src)
			}
			return true
		})
	})
}

// lanHTTPClient is httpClient from the client host's LAN address.
func (l *lab) lanHTTPClient(dst string) *http.Client {
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(lanClient, 0)), FallbackDelay: -1}
	c := l.httpClient(dst)
	c.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, _ string) (conn net.Conn, err error) {
		err = l.n.Do("client", func() error {
			conn, err = d.DialContext(ctx, network, dst)
			return err
		})
		return conn, err
	}
	return c
}

// exchange connects from the client host to dst, writes b, and returns what
// comes back until the gateway closes the connection (err is nil then), or
// an error: a reset, or the deadline (os.ErrDeadlineExceeded) when the
// connection stays open.
func (l *lab) exchange(dst string, b []byte) ([]byte, error) {
	c, err := l.n.DialContext("client")(context.Background(), "tcp", dst)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write(b); err != nil {
		return nil, closedErr(err)
	}
	got, err := io.ReadAll(c)
	return got, closedErr(err)
}

// closedErr maps the ways a peer closes a connection to io.EOF, so that
// "closed" is one case for the caller.
func closedErr(err error) error {
	switch {
	case err == nil:
		return io.EOF // io.ReadAll's clean end
	case errors.Is(err, os.ErrDeadlineExceeded):
		return err
	case errors.Is(err, net.ErrClosed), strings.Contains(err.Error(), "connection reset"), strings.Contains(err.Error(), "broken pipe"):
		return io.EOF
	}
	return err
}
