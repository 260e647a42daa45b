package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/labgate/labgate/internal/testnet"
)

// vpnYAML is a gateway whose private side — HTTPS and the embedded DNS server
// — listens only on its VPN address, as in docs/dns.md.
const vpnYAML = `version: 1
domain: lab.test
state_dir: %[1]s
log: { format: text, level: info }
dns: { serve: { listen: ["%[2]s:53"] } }
gateway:
  private: { name: private, https: ["%[2]s:443"], allow: [%[3]s/32] }
  admin: "127.0.0.1:9180"
services:
  - { name: vault, host: vault, backend: "http://%[4]s:%[5]d" }
`

// TestGatewayStartsBeforeItsVPNAddress starts `labgate serve` on a host that
// does not have its VPN address yet — at boot, a tailnet or WireGuard
// interface gets it after labgate starts — and checks that the gateway says
// so and starts anyway, and that HTTPS and DNS on that address work as soon
// as the address is assigned, with no restart.
func TestGatewayStartsBeforeItsVPNAddress(t *testing.T) {
	n := testnet.New(t, "client", "gateway", "backend")
	client, backend := n.Addr("client"), n.Addr("backend")
	vpn := netip.MustParseAddr("10.77.0.60") // on no host yet

	startHTTPBackend(t, n.Listen("backend", "tcp", addr(backend, webPort)))
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	cfg := filepath.Join(dir, "lab.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, vpnYAML, state, vpn, client, backend, webPort), 0o600); err != nil {
		t.Fatal(err)
	}

	gw := n.Start("gateway", labgate, "serve", "-c", cfg)
	waitOutput(t, gw, "labgate serving")
	waitOutput(t, gw, "answering DNS for the lab")
	for _, want := range []string{vpn.String() + ":443", vpn.String() + ":53"} {
		if !strings.Contains(gw.Output(), "does not have (yet)") || !strings.Contains(gw.Output(), want) {
			t.Errorf("the gateway does not warn that %s is not on the machine yet:\n%s", want, gw.Output())
		}
	}
	roots := caRoots(t, state)

	n.AddAddr("gateway", netip.PrefixFrom(vpn, 24))

	c := &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return n.DialContext("client")(ctx, network, addr(vpn, 443))
			},
			TLSClientConfig:   &tls.Config{RootCAs: roots},
			DisableKeepAlives: true,
		},
		Timeout: 10 * time.Second,
	}
	status, s := get(t, c, "https://vault.lab.test/")
	if status != http.StatusOK {
		t.Fatalf("GET https://vault.lab.test/ over the VPN address: %d, want 200", status)
	}
	if host, _, _ := net.SplitHostPort(s.XRealIP + ":0"); host != client.String() {
		t.Errorf("the backend saw X-Real-IP %q, want the client %s", s.XRealIP, client)
	}

	for _, network := range []string{"udp", "tcp"} {
		conn, err := n.DialContext("client")(context.Background(), network, addr(vpn, 53))
		if err != nil {
			t.Fatalf("DNS over %s: %v", network, err)
		}
		dc := &dns.Conn{Conn: conn}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		q := new(dns.Msg).SetQuestion("vault.lab.test.", dns.TypeA)
		if err := dc.WriteMsg(q); err != nil {
			t.Fatalf("DNS over %s: %v", network, err)
		}
		m, err := dc.ReadMsg()
		conn.Close()
		if err != nil {
			t.Fatalf("DNS over %s: %v", network, err)
		}
		if !strings.Contains(fmt.Sprint(m.Answer), vpn.String()) {
			t.Errorf("DNS over %s: vault.lab.test answers %v, want the gateway's VPN address %s", network, m.Answer, vpn)
		}
	}
}
