package certs

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mholt/acmez/v3/acme"
	"github.com/miekg/dns"
)

// zoneServer is a small DNS server on loopback for one zone, auth.test:
// SOA and NS at the apex, ns1.auth.test -> nsAddr, and the TXT values set.
type zoneServer struct {
	addr   string
	nsAddr string
	aa     bool // answers with authority

	mu  sync.Mutex
	txt map[string][]string
}

func startZoneServer(t *testing.T, ip, nsAddr string) *zoneServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	z := &zoneServer{addr: pc.LocalAddr().String(), nsAddr: nsAddr, txt: map[string][]string{}}
	srv := &dns.Server{PacketConn: pc, Handler: z}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return z
}

func (z *zoneServer) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	z.mu.Lock()
	m.Authoritative = z.aa
	z.mu.Unlock()
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: 60}
	switch {
	case q.Qtype == dns.TypeSOA && name == "auth.test.":
		m.Answer = append(m.Answer, &dns.SOA{Hdr: hdr, Ns: "ns1.auth.test.", Mbox: "h.auth.test.", Serial: 1, Refresh: 60, Retry: 60, Expire: 60, Minttl: 60})
	case q.Qtype == dns.TypeNS && name == "auth.test.":
		m.Answer = append(m.Answer, &dns.NS{Hdr: hdr, Ns: "ns1.auth.test."})
	case q.Qtype == dns.TypeA && name == "ns1.auth.test.":
		host, _, _ := net.SplitHostPort(z.nsAddr)
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.ParseIP(host)})
	case q.Qtype == dns.TypeTXT:
		z.mu.Lock()
		for _, v := range z.txt[name] {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr, Txt: []string{v}})
		}
		z.mu.Unlock()
	}
	_ = w.WriteMsg(m)
}

func (z *zoneServer) set(name, value string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.txt[name] = append(z.txt[name], value)
}

// TestDNS01WaitAsksAuthoritative: the resolver never shows the value (as
// one that cached "no such name" would not); the zone's authoritative
// server, found through the resolver, does: Wait returns.
func TestDNS01WaitAsksAuthoritative(t *testing.T) {
	// The authoritative server listens on 127.0.0.1:<port>; the resolver
	// (another server) says ns1.auth.test is 127.0.0.1.
	auth := startZoneServer(t, "127.0.0.1", "")
	resolver := startZoneServer(t, "127.0.0.2", auth.addr)
	_, port, _ := net.SplitHostPort(auth.addr)
	chal := acme.Challenge{Type: acme.ChallengeTypeDNS01, Identifier: acme.Identifier{Type: "dns", Value: "www.auth.test"}, Token: "tok", KeyAuthorization: "tok.key"}
	name := "_acme-challenge.www.auth.test."

	s := &dns01Solver{resolvers: []string{resolver.addr}, interval: 10 * time.Millisecond, timeout: 300 * time.Millisecond, authPort: port}
	if err := s.Wait(context.Background(), chal); err == nil {
		t.Fatal("Wait returned before the value was anywhere")
	}
	auth.set(name, chal.DNS01KeyAuthorization())
	if err := s.Wait(context.Background(), chal); err != nil {
		t.Fatalf("the authoritative server has the value, yet: %v", err)
	}

	// Without a usable SOA (a resolver that knows no zone), the resolvers are asked.
	noZone := &dns01Solver{resolvers: []string{auth.addr}, interval: 10 * time.Millisecond, timeout: 300 * time.Millisecond, authPort: "1"}
	chal2 := chal
	chal2.Identifier.Value = "other.example"
	if err := noZone.Wait(context.Background(), chal2); err == nil {
		t.Fatal("Wait returned for a value nobody has")
	}
	auth.set("_acme-challenge.other.example.", chal2.DNS01KeyAuthorization())
	if err := noZone.Wait(context.Background(), chal2); err != nil {
		t.Fatalf("the resolver has the value, yet: %v", err)
	}
}

// TestDNS01WaitAsksAuthoritativeResolver: dns.resolvers names the zone's
// own server on a port of its own (as a lab's primary, or BIND in the
// tests); its NS record says 127.0.0.1, port 53, where nothing answers.
// The resolver answers with authority, so it is asked directly.
func TestDNS01WaitAsksAuthoritativeResolver(t *testing.T) {
	auth := startZoneServer(t, "127.0.0.1", "127.0.0.1:1")
	auth.mu.Lock()
	auth.aa = true
	auth.mu.Unlock()
	chal := acme.Challenge{Type: acme.ChallengeTypeDNS01, Identifier: acme.Identifier{Type: "dns", Value: "www.auth.test"}, Token: "tok", KeyAuthorization: "tok.key"}
	s := &dns01Solver{resolvers: []string{auth.addr}, interval: 10 * time.Millisecond, timeout: 300 * time.Millisecond, authPort: "1"}
	if err := s.Wait(context.Background(), chal); err == nil {
		t.Fatal("Wait returned before the value was anywhere")
	}
	auth.set("_acme-challenge.www.auth.test.", chal.DNS01KeyAuthorization())
	if err := s.Wait(context.Background(), chal); err != nil {
		t.Fatalf("the zone's own server has the value, yet: %v", err)
	}
}
