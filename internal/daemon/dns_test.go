package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/testpeer"
)

// lookup asks server for name's records of type qtype and returns their
// data (the text after the header), sorted; nil on any failure.
func lookup(server, name string, qtype uint16) []string {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	r, _, err := new(dns.Client).Exchange(m, server)
	if err != nil {
		return nil
	}
	var out []string
	for _, rr := range r.Answer {
		if rr.Header().Rrtype == qtype {
			out = append(out, strings.TrimPrefix(rr.String(), rr.Header().String()))
		}
	}
	slices.Sort(out)
	return out
}

// TestServeReconcilesDNS runs serve against a real BIND: the records are
// made at start and follow a change of the file; the embedded DNS server
// answers the lab's names from the same file.
func TestServeReconcilesDNS(t *testing.T) {
	b := testpeer.StartBIND(t, "lab.test", `blog IN A 192.0.2.1`)
	serveAddr := net.JoinHostPort("127.0.0.41", testpeer.FreePort(t, "127.0.0.41"))
	dnsSection := fmt.Sprintf(`relay: { public_ips: [203.0.113.7], gateway: 127.0.0.11 }
dns:
  provider: { type: rfc2136, server: %q, tsig_name: %q, tsig_secret: %q }
  owner: labtest
  interval: 1h
  serve: { listen: [%q] }
`, b.Addr, b.KeyName, b.Secret, serveAddr)
	l := startLabWith(t, true, dnsSection)

	waitFor(t, "the records in BIND", func() bool {
		return slices.Equal(lookup(b.Addr, "www.lab.test", dns.TypeCNAME), []string{"relay.lab.test."}) &&
			slices.Equal(lookup(b.Addr, "vault.lab.test", dns.TypeCNAME), []string{"private-relay.lab.test."}) &&
			slices.Equal(lookup(b.Addr, "relay.lab.test", dns.TypeA), []string{"203.0.113.7"}) &&
			slices.Equal(lookup(b.Addr, "private-relay.lab.test", dns.TypeA), []string{"127.0.0.21", "127.0.0.22"})
	})
	if got := lookup(b.Addr, "a-relay.lab.test", dns.TypeTXT); !slices.Equal(got, []string{`"heritage=external-dns,external-dns/owner=labtest"`}) {
		t.Errorf("ownership record of relay = %v", got)
	}
	// The embedded server: every service at the private address (both
	// private listeners, 127.0.0.21 and .22).
	if got := lookup(serveAddr, "www.lab.test", dns.TypeA); !slices.Equal(got, []string{"127.0.0.21", "127.0.0.22"}) {
		t.Errorf("embedded server: www.lab.test A = %v", got)
	}
	waitFor(t, "labgate_dns_reconcile_success 1", func() bool {
		return strings.Contains(scrape(t, l.addr(admin)), "\nlabgate_dns_reconcile_success 1\n")
	})

	// A new service: reconciled at once, and answered by the same server.
	l.write(fmt.Sprintf(labConfig, l.backend["www"].URL, l.backend["vault"].URL) +
		`  - { name: wiki, host: wiki, backend: "` + l.backend["vault"].URL + `" }
` + dnsSection)
	waitFor(t, "wiki in BIND", func() bool {
		return slices.Equal(lookup(b.Addr, "wiki.lab.test", dns.TypeCNAME), []string{"private-relay.lab.test."})
	})
	waitFor(t, "wiki in the embedded server", func() bool {
		return slices.Equal(lookup(serveAddr, "wiki.lab.test", dns.TypeA), []string{"127.0.0.21", "127.0.0.22"})
	})
	// The hand-made record was never touched.
	if got := lookup(b.Addr, "blog.lab.test", dns.TypeA); !slices.Equal(got, []string{"192.0.2.1"}) {
		t.Errorf("blog.lab.test A = %v", got)
	}

	// wiki goes away while the file names a server that does not answer:
	// reconciliation is reported failing, BIND keeps wiki.
	closed := net.JoinHostPort("127.0.0.1", testpeer.FreePort(t, "127.0.0.1"))
	l.write(fmt.Sprintf(labConfig, l.backend["www"].URL, l.backend["vault"].URL) + strings.Replace(dnsSection, b.Addr, closed, 1))
	waitFor(t, "labgate_dns_reconcile_success 0", func() bool {
		return strings.Contains(scrape(t, l.addr(admin)), "\nlabgate_dns_reconcile_success 0\n")
	})
	if got := lookup(b.Addr, "wiki.lab.test", dns.TypeCNAME); len(got) != 1 {
		t.Errorf("wiki.lab.test = %v, want it kept", got)
	}
	// Back on BIND: wiki is deleted, with its ownership record, and the
	// reconciliation recovers.
	l.write(fmt.Sprintf(labConfig, l.backend["www"].URL, l.backend["vault"].URL) + dnsSection)
	waitFor(t, "wiki gone from BIND", func() bool {
		return len(lookup(b.Addr, "wiki.lab.test", dns.TypeCNAME)) == 0 && len(lookup(b.Addr, "cname-wiki.lab.test", dns.TypeTXT)) == 0
	})
	waitFor(t, "labgate_dns_reconcile_success 1", func() bool {
		return strings.Contains(scrape(t, l.addr(admin)), "\nlabgate_dns_reconcile_success 1\n")
	})
}

// TestDNSServerAddsAnAddress: a reload that adds a listen address next to
// one the embedded server already has (same port) answers on both; binding
// the new set while the old one held the port used to fail, and the server
// kept its old addresses until a restart.
func TestDNSServerAddsAnAddress(t *testing.T) {
	port := testpeer.FreePort(t, "127.0.0.42")
	a, b := net.JoinHostPort("127.0.0.42", port), net.JoinHostPort("127.0.0.43", port)
	cfgFor := func(listen ...string) *config.Config {
		t.Helper()
		var quoted []string
		for _, l := range listen {
			quoted = append(quoted, strconv.Quote(l))
		}
		cfg, err := config.Parse("lab.yaml", []byte(`version: 1
domain: lab.test
gateway:
  private: {https: ["127.0.0.21:443"]}
dns:
  serve: { listen: [`+strings.Join(quoted, ", ")+`] }
services:
  - {name: vault, host: vault, backend: "http://192.0.2.20:8080"}
`), config.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	r := newDNSRunner(nil, nil)
	defer r.stop()
	log := slog.New(slog.DiscardHandler)
	r.update(cfgFor(a), log)
	if got := lookup(a, "vault.lab.test", dns.TypeA); !slices.Equal(got, []string{"127.0.0.21"}) {
		t.Fatalf("first address: vault A = %v", got)
	}
	r.update(cfgFor(a, b), log)
	for _, addr := range []string{a, b} {
		if got := lookup(addr, "vault.lab.test", dns.TypeA); !slices.Equal(got, []string{"127.0.0.21"}) {
			t.Errorf("%s after adding %s: vault A = %v", addr, b, got)
		}
	}
	// An address that cannot be bound keeps the server on the ones it had.
	r.update(cfgFor(a, "192.0.2.1:"+port), log)
	if got := lookup(a, "vault.lab.test", dns.TypeA); !slices.Equal(got, []string{"127.0.0.21"}) {
		t.Errorf("after a failed bind: vault A = %v, want the server still answering", got)
	}
}
