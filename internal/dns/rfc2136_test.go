package dns

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"

	"github.com/labgate/labgate/internal/testpeer"
)

// startBIND starts BIND with the zone example.org holding records (zone-file
// lines) and returns an RFC2136 provider for it.
func startBIND(t *testing.T, records ...string) (*testpeer.BIND, *RFC2136) {
	t.Helper()
	b := testpeer.StartBIND(t, "example.org", records...)
	return b, &RFC2136{Server: b.Addr, Zone: b.Zone, KeyName: b.KeyName, Algorithm: b.Algorithm, Secret: b.Secret}
}

// query asks the server for name's type records and returns their values,
// sorted, as fromRR presents them.
func query(t *testing.T, server, name, typ string) []string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.StringToType[typ])
	r, _, err := (&dns.Client{Net: "tcp"}).Exchange(m, server)
	if err != nil {
		t.Fatalf("query %s %s: %v", name, typ, err)
	}
	var out []string
	for _, rr := range r.Answer {
		if rr.Header().Rrtype == dns.StringToType[typ] {
			out = append(out, fromRR(rr).Values[0])
		}
	}
	slices.Sort(out)
	return out
}

// reconcileOnce lists, plans and applies every change, failing the test on
// any error, and returns the plan.
func reconcileOnce(t *testing.T, p Provider, desired []Record, owner string) Changeset {
	t.Helper()
	ctx := context.Background()
	cur, err := p.Records(ctx)
	if err != nil {
		t.Fatalf("Records: %v", err)
	}
	cs := Plan(cur, desired, owner)
	for _, c := range cs.Changes {
		if err := p.Apply(ctx, c); err != nil {
			t.Fatalf("Apply(%s): %v", c, err)
		}
	}
	return cs
}

func actions(cs Changeset) []string {
	var out []string
	for _, c := range cs.Changes {
		out = append(out, c.String())
	}
	for _, c := range cs.Conflicts {
		out = append(out, "conflict "+c.Record.Name+" "+c.Record.Type)
	}
	return out
}

func TestRFC2136CreateUpdateDelete(t *testing.T) {
	b, p := startBIND(t)
	desired := []Record{
		{Name: "relay.example.org", Type: "A", TTL: 300, Values: []string{"203.0.113.7"}},
		{Name: "relay.example.org", Type: "AAAA", TTL: 300, Values: []string{"2001:db8::7"}},
		{Name: "private-relay.example.org", Type: "A", TTL: 300, Values: []string{"100.101.102.103"}},
		{Name: "vault.example.org", Type: "CNAME", TTL: 300, Values: []string{"private-relay.example.org"}},
		{Name: "*.apps.example.org", Type: "CNAME", TTL: 300, Values: []string{"relay.example.org"}},
	}
	cs := reconcileOnce(t, p, desired, "homelab")
	if got := cs.Count(Create); got != 5 {
		t.Fatalf("first run: %d creates, want 5: %v", got, actions(cs))
	}
	if got := query(t, b.Addr, "relay.example.org", "A"); !slices.Equal(got, []string{"203.0.113.7"}) {
		t.Errorf("relay A = %v", got)
	}
	if got := query(t, b.Addr, "x.apps.example.org", "CNAME"); !slices.Equal(got, []string{"relay.example.org"}) {
		t.Errorf("wildcard answer = %v", got)
	}
	if got := query(t, b.Addr, "cname-vault.example.org", "TXT"); !slices.Equal(got, []string{"heritage=external-dns,external-dns/owner=homelab"}) {
		t.Errorf("ownership TXT of vault = %v", got)
	}

	// A second run finds everything in place.
	if cs := reconcileOnce(t, p, desired, "homelab"); len(cs.Changes)+len(cs.Conflicts) != 0 || cs.Unchanged != 5 {
		t.Fatalf("second run: %v, %d unchanged; want nothing to do", actions(cs), cs.Unchanged)
	}

	// The relay moves and vault goes away.
	desired[0].Values = []string{"203.0.113.8", "203.0.113.9"}
	desired = slices.Delete(desired, 3, 4)
	cs = reconcileOnce(t, p, desired, "homelab")
	want := []string{
		"delete vault.example.org CNAME private-relay.example.org",
		"update relay.example.org A 203.0.113.8, 203.0.113.9 (was 203.0.113.7)",
	}
	if diff := cmp.Diff(want, actions(cs)); diff != "" {
		t.Fatalf("third run (-want +got):\n%s", diff)
	}
	if got := query(t, b.Addr, "relay.example.org", "A"); !slices.Equal(got, []string{"203.0.113.8", "203.0.113.9"}) {
		t.Errorf("relay A after update = %v", got)
	}
	if got := query(t, b.Addr, "vault.example.org", "CNAME"); len(got) != 0 {
		t.Errorf("vault still there: %v", got)
	}
	if got := query(t, b.Addr, "cname-vault.example.org", "TXT"); len(got) != 0 {
		t.Errorf("vault's ownership TXT still there: %v", got)
	}
}

func TestRFC2136NeverTouchesOthers(t *testing.T) {
	b, p := startBIND(t,
		`blog IN A 192.0.2.1`, // made by hand: no ownership record
		`wiki IN CNAME elsewhere.example.net.`,
		`cname-wiki IN TXT "heritage=external-dns,external-dns/owner=k8s"`,
		`old IN A 192.0.2.2`, // another owner's record that labgate does not want
		`a-old IN TXT "heritage=external-dns,external-dns/owner=k8s"`,
		`mail IN MX 10 mx.example.net.`, // a CNAME must be alone at its name
	)
	desired := []Record{
		{Name: "blog.example.org", Type: "CNAME", TTL: 300, Values: []string{"relay.example.org"}},
		{Name: "wiki.example.org", Type: "CNAME", TTL: 300, Values: []string{"relay.example.org"}},
		{Name: "mail.example.org", Type: "CNAME", TTL: 300, Values: []string{"relay.example.org"}},
	}
	cs := reconcileOnce(t, p, desired, "homelab")
	want := []string{"conflict blog.example.org CNAME", "conflict mail.example.org CNAME", "conflict wiki.example.org CNAME"}
	if diff := cmp.Diff(want, actions(cs)); diff != "" {
		t.Fatalf("plan (-want +got):\n%s", diff)
	}
	for _, c := range []struct{ name, typ, want string }{
		{"blog.example.org", "A", "192.0.2.1"},
		{"wiki.example.org", "CNAME", "elsewhere.example.net"},
		{"old.example.org", "A", "192.0.2.2"},
		{"mail.example.org", "MX", "10 mx.example.net."},
	} {
		if got := query(t, b.Addr, c.name, c.typ); !slices.Equal(got, []string{c.want}) {
			t.Errorf("%s %s = %v, want %s (untouched)", c.name, c.typ, got, c.want)
		}
	}
}

func TestRFC2136AdoptsExternalDNSRecords(t *testing.T) {
	// What ExternalDNS v0.22 leaves in a zone, with the owner id "homelab".
	b, p := startBIND(t,
		`relay IN A 203.0.113.1`,
		`a-relay IN TXT "heritage=external-dns,external-dns/owner=homelab,external-dns/resource=service/default/relay"`,
		`gone IN CNAME relay.example.org.`,
		`cname-gone IN TXT "heritage=external-dns,external-dns/owner=homelab,external-dns/resource=ingress/default/gone"`,
	)
	desired := []Record{{Name: "relay.example.org", Type: "A", TTL: 300, Values: []string{"203.0.113.7"}}}
	cs := reconcileOnce(t, p, desired, "homelab")
	want := []string{
		"delete gone.example.org CNAME relay.example.org",
		"update relay.example.org A 203.0.113.7 (was 203.0.113.1)",
	}
	if diff := cmp.Diff(want, actions(cs)); diff != "" {
		t.Fatalf("plan (-want +got):\n%s", diff)
	}
	if got := query(t, b.Addr, "relay.example.org", "A"); !slices.Equal(got, []string{"203.0.113.7"}) {
		t.Errorf("relay A = %v", got)
	}
	// The ownership record is kept as ExternalDNS wrote it, so it can take the zone back.
	if got := query(t, b.Addr, "a-relay.example.org", "TXT"); len(got) != 1 || !strings.Contains(got[0], "external-dns/resource=service/default/relay") {
		t.Errorf("a-relay TXT = %v", got)
	}
	if got := query(t, b.Addr, "cname-gone.example.org", "TXT"); len(got) != 0 {
		t.Errorf("gone's ownership record left behind: %v", got)
	}
}

func TestRFC2136EditBetweenPlanAndApply(t *testing.T) {
	ctx := context.Background()
	b, p := startBIND(t, `taken IN A 192.0.2.50`)
	desired := []Record{
		{Name: "relay.example.org", Type: "A", TTL: 300, Values: []string{"203.0.113.7"}},
		{Name: "vault.example.org", Type: "CNAME", TTL: 300, Values: []string{"private-relay.example.org"}},
	}
	reconcileOnce(t, p, desired, "homelab")

	// Plan a change of each kind, then let someone edit the zone by hand.
	cur, err := p.Records(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := []Record{
		{Name: "relay.example.org", Type: "A", TTL: 300, Values: []string{"203.0.113.8"}},
		{Name: "new.example.org", Type: "A", TTL: 300, Values: []string{"203.0.113.10"}},
	}
	cs := Plan(cur, next, "homelab")
	if diff := cmp.Diff([]string{
		"delete vault.example.org CNAME private-relay.example.org",
		"update relay.example.org A 203.0.113.8 (was 203.0.113.7)",
		"create new.example.org A 203.0.113.10",
	}, actions(cs)); diff != "" {
		t.Fatalf("plan (-want +got):\n%s", diff)
	}
	hand := &RFC2136{Server: b.Addr, Zone: b.Zone, KeyName: b.KeyName, Secret: b.Secret}
	for _, r := range []Record{
		{Name: "relay.example.org", Type: "A", TTL: 300, Values: []string{"198.51.100.1"}},
		{Name: "vault.example.org", Type: "CNAME", TTL: 300, Values: []string{"nas.example.org"}},
		{Name: "new.example.org", Type: "A", TTL: 300, Values: []string{"198.51.100.2"}},
	} {
		m := new(dns.Msg)
		m.SetUpdate("example.org.")
		m.RemoveRRset(rrset(r.Name, r.Type))
		rrs, _ := toRRs(r)
		m.Insert(rrs)
		if err := hand.update(ctx, m); err != nil {
			t.Fatalf("editing %s by hand: %v", r.Name, err)
		}
	}
	for _, c := range cs.Changes {
		if err := p.Apply(ctx, c); !errors.Is(err, ErrChanged) {
			t.Errorf("Apply(%s) = %v, want ErrChanged", c, err)
		}
	}
	for _, c := range []struct{ name, typ, want string }{
		{"relay.example.org", "A", "198.51.100.1"},
		{"vault.example.org", "CNAME", "nas.example.org"},
		{"new.example.org", "A", "198.51.100.2"},
	} {
		if got := query(t, b.Addr, c.name, c.typ); !slices.Equal(got, []string{c.want}) {
			t.Errorf("%s %s = %v, want the hand-made %s", c.name, c.typ, got, c.want)
		}
	}
}

func TestRFC2136ChallengeTXT(t *testing.T) {
	ctx := context.Background()
	b, p := startBIND(t)
	// The apex and the wildcard certificate share one challenge name.
	const name = "_acme-challenge.example.org"
	for _, v := range []string{"token-apex", "token-wildcard"} {
		if err := p.SetTXT(ctx, name, v); err != nil {
			t.Fatalf("SetTXT(%s): %v", v, err)
		}
	}
	if err := p.SetTXT(ctx, name, "token-apex"); err != nil { // again: idempotent
		t.Fatal(err)
	}
	if got := query(t, b.Addr, name, "TXT"); !slices.Equal(got, []string{"token-apex", "token-wildcard"}) {
		t.Fatalf("TXT after two SetTXT = %v", got)
	}
	if err := p.DeleteTXT(ctx, name, "token-apex"); err != nil {
		t.Fatal(err)
	}
	if got := query(t, b.Addr, name, "TXT"); !slices.Equal(got, []string{"token-wildcard"}) {
		t.Fatalf("TXT after deleting one = %v", got)
	}
	if err := p.DeleteTXT(ctx, name, "token-wildcard"); err != nil {
		t.Fatal(err)
	}
	if got := query(t, b.Addr, name, "TXT"); len(got) != 0 {
		t.Fatalf("TXT after deleting both = %v", got)
	}
	if err := p.SetTXT(ctx, "_acme-challenge.example.net", "x"); err == nil {
		t.Error("SetTXT outside the zone succeeded")
	}
}

func TestRFC2136WrongKey(t *testing.T) {
	b, _ := startBIND(t)
	p := &RFC2136{Server: b.Addr, Zone: b.Zone, KeyName: b.KeyName, Secret: "c2VjcmV0LXRoYXQtaXMtd3Jvbmc="}
	if _, err := p.Records(context.Background()); err == nil {
		t.Fatal("listing with a wrong TSIG secret succeeded")
	} else if !strings.Contains(err.Error(), "did not accept the TSIG key") {
		t.Errorf("error does not point at the key: %v", err)
	}
}

// A zone name the server does not hold (a typo in dns.zone or domain) is
// refused by BIND like a wrong key: the error names the zone, not the key.
func TestRFC2136ZoneNotServed(t *testing.T) {
	b, _ := startBIND(t)
	p := &RFC2136{Server: b.Addr, Zone: "example.net", KeyName: b.KeyName, Algorithm: b.Algorithm, Secret: b.Secret}
	_, err := p.Records(context.Background())
	if err == nil {
		t.Fatal("listing a zone the server does not hold succeeded")
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "example.net") || !strings.Contains(err.Error(), "dns.zone") {
		t.Errorf("error does not point at the zone name: %v", err)
	}
}

// No server at the address: the error says which setting to check.
func TestRFC2136Unreachable(t *testing.T) {
	addr := net.JoinHostPort("127.0.0.1", testpeer.FreePort(t, "127.0.0.1"))
	p := &RFC2136{Server: addr, Zone: "example.org", KeyName: "k", Secret: "c2VjcmV0"}
	_, err := p.Records(context.Background())
	if err == nil {
		t.Fatal("listing from a closed port succeeded")
	}
	if !strings.Contains(err.Error(), "cannot reach "+addr) || !strings.Contains(err.Error(), "dns.provider.server") {
		t.Errorf("error does not say what to check: %v", err)
	}
}

// TestRFC2136Apex: records at the zone's apex (a service whose host is the
// domain itself) get an ownership record inside the zone, so they are
// created, found in place the next time, and deleted when no longer wanted.
// ExternalDNS's name for it (a-example.org) would be outside example.org:
// the server refuses the update, and every reconciliation failed.
func TestRFC2136Apex(t *testing.T) {
	b, p := startBIND(t)
	z := &Zone{Provider: p, Owner: "homelab", Desired: Desired{Zone: "example.org", Records: []Record{
		{Name: "example.org", Type: "A", TTL: 300, Values: []string{"203.0.113.7"}},
	}}}
	ctx := context.Background()
	run := func() Changeset {
		t.Helper()
		cs, err := z.Plan(ctx)
		if err != nil {
			t.Fatalf("Plan: %v", err)
		}
		if _, err := z.Apply(ctx, cs); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		return cs
	}
	if cs := run(); cs.Count(Create) != 1 {
		t.Fatalf("first run: %v", actions(cs))
	}
	if got := query(t, b.Addr, "example.org", "A"); !slices.Equal(got, []string{"203.0.113.7"}) {
		t.Errorf("apex A = %v", got)
	}
	if cs := run(); len(cs.Changes)+len(cs.Conflicts) != 0 || cs.Unchanged != 1 {
		t.Fatalf("second run: %v; want nothing to do", actions(cs))
	}
	z.Desired.Records = nil
	if cs := run(); cs.Count(Delete) != 1 {
		t.Fatalf("third run: %v; want the apex A deleted", actions(cs))
	}
	if got := query(t, b.Addr, "example.org", "A"); len(got) != 0 {
		t.Errorf("apex A still there: %v", got)
	}
	// The zone's own apex records (SOA, NS) were never labgate's.
	if got := query(t, b.Addr, "example.org", "SOA"); len(got) != 1 {
		t.Errorf("apex SOA = %v", got)
	}
}

// TestRFC2136CancelStopsWaiting: a server that takes the connection and
// never answers does not hold a stopping reconciler for the exchange's
// timeout: the end of the context closes the connection.
func TestRFC2136CancelStopsWaiting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	p := &RFC2136{Server: ln.Addr().String(), Zone: "example.org", KeyName: "labgate", Secret: "c2VjcmV0", Timeout: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- p.Apply(ctx, Change{Action: Create, Record: Record{Name: "x.example.org", Type: "A", TTL: 60, Values: []string{"192.0.2.1"}}})
	}()
	c := <-accepted
	defer c.Close()
	if _, err := io.ReadFull(c, make([]byte, 2)); err != nil { // the update is on its way
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Apply succeeded without an answer")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Apply still waits for the server 30s after its context ended")
	}
}

// TestRFC2136UnsignedAnswer: an answer to an update that does not carry
// the TSIG signature (a forged one, or a server that is not the one
// holding the key) is not taken for a success.
func TestRFC2136UnsignedAnswer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		_ = w.WriteMsg(m)
	}), MsgAcceptFunc: func(dns.Header) dns.MsgAcceptAction { return dns.MsgAccept }}
	go func() { _ = srv.ActivateAndServe() }()
	defer srv.Shutdown()
	p := &RFC2136{Server: ln.Addr().String(), Zone: "example.org", KeyName: "labgate", Secret: "c2VjcmV0"}
	err = p.Apply(context.Background(), Change{Action: Create, Record: Record{Name: "x.example.org", Type: "A", TTL: 60, Values: []string{"192.0.2.1"}}})
	if err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Errorf("Apply with an unsigned NOERROR answer: %v, want an error", err)
	}
}
