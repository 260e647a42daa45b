package dns

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

const serveYAML = `version: 1
domain: example.org
dns:
  flatten: %s
relay: {public_ips: [203.0.113.7], gateway: 100.101.102.103}
gateway:
  public: {https: "100.101.102.103:10443", trusted_relays: [100.90.0.1]}
  private: {https: ["100.101.102.103:443"], http: ["[fd7a::1]:80"]}
services:
  - {name: vault, host: vault, backend: "http://192.168.1.20:8080"}
  - {name: blog, host: blog, expose: public, backend: "http://192.168.1.21:8080"}
  - {name: apps, hosts: ["*.apps.example.org"], backend: "http://192.168.1.22:8080"}
`

// ask queries the server over net ("udp" or "tcp") and returns the rcode and
// the answer and authority sections as text, without TTLs.
func ask(t *testing.T, net, addr, name string, qtype uint16) (string, []string, []string) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	r, _, err := (&dns.Client{Net: net}).Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s: %v", name, dns.TypeToString[qtype], err)
	}
	if r.RecursionAvailable {
		t.Errorf("%s: recursion available", name)
	}
	text := func(rrs []dns.RR) []string {
		var out []string
		for _, rr := range rrs {
			rr.Header().Ttl = 0
			out = append(out, strings.ReplaceAll(rr.String(), "\t", " "))
		}
		return out
	}
	rcode := dns.RcodeToString[r.Rcode]
	if r.Authoritative {
		rcode += " aa"
	}
	return rcode, text(r.Answer), text(r.Ns)
}

// runServer serves the file yaml on a loopback port until the test ends.
func runServer(t *testing.T, yaml string) *Server {
	t.Helper()
	s, err := Listen([]string{"127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Update(parse(t, yaml))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestServer(t *testing.T) {
	s := runServer(t, fmt.Sprintf(serveYAML, "false"))
	addr := s.Addrs()[0]
	soa := func(serial uint32) string {
		return fmt.Sprintf("example.org. 0 IN SOA private-relay.example.org. hostmaster.example.org. %d 3600 600 86400 300", serial)
	}
	serial := s.answers.Load().serial
	tests := []struct {
		name       string
		qtype      uint16
		rcode      string
		answer, ns []string
	}{
		{"vault.example.org", dns.TypeA, "NOERROR aa", []string{
			"vault.example.org. 0 IN CNAME private-relay.example.org.",
			"private-relay.example.org. 0 IN A 100.101.102.103",
		}, nil},
		// Over the VPN, a public service is reached directly too.
		{"Blog.Example.org", dns.TypeAAAA, "NOERROR aa", []string{
			"Blog.Example.org. 0 IN CNAME private-relay.example.org.",
			"private-relay.example.org. 0 IN AAAA fd7a::1",
		}, nil},
		{"x.apps.example.org", dns.TypeA, "NOERROR aa", []string{
			"x.apps.example.org. 0 IN CNAME private-relay.example.org.",
			"private-relay.example.org. 0 IN A 100.101.102.103",
		}, nil},
		{"relay.example.org", dns.TypeA, "NOERROR aa", []string{"relay.example.org. 0 IN A 203.0.113.7"}, nil},
		{"vault.example.org", dns.TypeCNAME, "NOERROR aa", []string{"vault.example.org. 0 IN CNAME private-relay.example.org."}, nil},
		{"relay.example.org", dns.TypeMX, "NOERROR aa", nil, []string{soa(serial)}},
		{"apps.example.org", dns.TypeA, "NOERROR aa", nil, []string{soa(serial)}}, // an empty non-terminal
		{"nope.example.org", dns.TypeA, "NXDOMAIN aa", nil, []string{soa(serial)}},
		{"example.org", dns.TypeSOA, "NOERROR aa", []string{soa(serial)}, nil},
		{"example.org", dns.TypeNS, "NOERROR aa", []string{"example.org. 0 IN NS private-relay.example.org."}, nil},
		{"example.net", dns.TypeA, "REFUSED", nil, nil},
		{"www.google.com", dns.TypeA, "REFUSED", nil, nil},
	}
	for _, proto := range []string{"udp", "tcp"} {
		for _, tt := range tests {
			t.Run(proto+" "+tt.name+" "+dns.TypeToString[tt.qtype], func(t *testing.T) {
				type reply struct {
					Rcode      string
					Answer, Ns []string
				}
				rcode, answer, ns := ask(t, proto, addr, tt.name, tt.qtype)
				if diff := cmp.Diff(reply{tt.rcode, tt.answer, tt.ns}, reply{rcode, answer, ns}); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			})
		}
	}

	// Flattening takes effect on the same socket.
	s.Update(parse(t, fmt.Sprintf(serveYAML, "true")))
	if _, answer, _ := ask(t, "udp", addr, "vault.example.org", dns.TypeA); !cmp.Equal(answer, []string{"vault.example.org. 0 IN A 100.101.102.103"}) {
		t.Errorf("flattened vault A = %v", answer)
	}
}

// FuzzServerAnswer feeds the server arbitrary queries: it must answer each
// without panicking, never recursively, and never for a name outside the zone.
func FuzzServerAnswer(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"vault.example.org.", dns.TypeA}, {"x.apps.example.org.", dns.TypeANY}, {".", dns.TypeNS}, {"example.net.", dns.TypeA}} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		b, _ := m.Pack()
		f.Add(b)
	}
	cfg, err := parseConfig(fmt.Sprintf(serveYAML, "false"))
	if err != nil {
		f.Fatal(err)
	}
	s := &Server{}
	s.Update(cfg)
	f.Fuzz(func(t *testing.T, b []byte) {
		req := new(dns.Msg)
		if req.Unpack(b) != nil {
			return
		}
		m := s.answer(req, len(b)%2 == 0)
		if m.RecursionAvailable {
			t.Fatal("recursion available")
		}
		for _, rr := range m.Answer {
			if !InZone(normName(rr.Header().Name), "example.org") {
				t.Fatalf("answered for %s", rr.Header().Name)
			}
		}
		if _, err := m.Pack(); err != nil {
			t.Fatalf("answer does not pack: %v", err)
		}
	})
}

// TestServerUDPAmplification: over UDP (where a query's source may be
// spoofed) the answers stay small whatever the query asks for: ANY gets
// RFC 8482's one HINFO record, and no answer is larger than 1232 bytes,
// even when EDNS0 offers 65535; a larger one is truncated with the TC bit,
// and comes whole over TCP.
func TestServerUDPAmplification(t *testing.T) {
	var ips []string
	for i := range 80 {
		ips = append(ips, fmt.Sprintf("2001:db8::%x", i+1))
	}
	yaml := strings.Replace(fmt.Sprintf(serveYAML, "false"), "public_ips: [203.0.113.7]",
		"public_ips: [203.0.113.7, "+strings.Join(ips, ", ")+"]", 1)
	s := runServer(t, yaml)
	addr := s.Addrs()[0]
	exchange := func(proto, name string, qtype uint16) (*dns.Msg, int) {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		m.SetEdns0(65535, false)
		c := &dns.Client{Net: proto, UDPSize: 65535}
		r, _, err := c.Exchange(m, addr)
		if err != nil {
			t.Fatalf("%s %s %s: %v", proto, name, dns.TypeToString[qtype], err)
		}
		r.Compress = true // as it came
		b, _ := r.Pack()
		return r, len(b)
	}

	r, size := exchange("udp", "relay.example.org.", dns.TypeANY)
	if len(r.Answer) != 1 || r.Answer[0].Header().Rrtype != dns.TypeHINFO || size > 512 {
		t.Errorf("ANY over UDP: %d bytes, answer %v; want RFC 8482's HINFO alone", size, r.Answer)
	}
	r, size = exchange("udp", "relay.example.org.", dns.TypeAAAA)
	if size > 1232 || !r.Truncated {
		t.Errorf("AAAA over UDP: %d bytes, truncated %v; want at most 1232 bytes and TC", size, r.Truncated)
	}
	if o := r.IsEdns0(); o == nil || o.UDPSize() != 1232 {
		t.Errorf("the answer's EDNS0 offers %v, want 1232", o)
	}
	r, _ = exchange("tcp", "relay.example.org.", dns.TypeAAAA)
	if len(r.Answer) != 80 || r.Truncated {
		t.Errorf("AAAA over TCP: %d records, truncated %v; want all 80", len(r.Answer), r.Truncated)
	}
	r, _ = exchange("tcp", "relay.example.org.", dns.TypeANY)
	if len(r.Answer) != 81 {
		t.Errorf("ANY over TCP: %d records, want the 81 A and AAAA", len(r.Answer))
	}
	r, _ = exchange("udp", "nope.example.org.", dns.TypeANY)
	if r.Rcode != dns.RcodeNameError {
		t.Errorf("ANY for a name that does not exist: %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}

	m := new(dns.Msg)
	m.SetQuestion("relay.example.org.", dns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().SetVersion(1)
	r, _, err := (&dns.Client{}).Exchange(m, addr)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != dns.RcodeBadVers || len(r.Answer) != 0 {
		t.Errorf("EDNS version 1: %s with %d answers, want BADVERS", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
}
