package dns

import (
	"context"
	"fmt"
	"testing"

	"github.com/miekg/dns"

	"github.com/labgate/labgate/internal/testpeer"
)

// benchRecords returns n service CNAMEs and the two entry points.
func benchRecords(n int) []Record {
	out := []Record{a("relay.example.org", "203.0.113.7"), a("private-relay.example.org", "100.101.102.103")}
	for i := range n {
		out = append(out, cname(fmt.Sprintf("svc%04d.example.org", i), "private-relay.example.org"))
	}
	return out
}

// BenchmarkPlan plans 1000 services against a zone holding them all (the
// steady state of every periodic run).
func BenchmarkPlan(b *testing.B) {
	desired := benchRecords(1000)
	var current []Record
	for _, r := range desired {
		current = append(current, r, Record{Name: OwnerName(r.Name, r.Type), Type: "TXT", TTL: 300, Values: []string{OwnerValue("homelab")}})
	}
	b.ResetTimer()
	for b.Loop() {
		if cs := Plan(current, desired, "homelab"); cs.Unchanged != len(desired) {
			b.Fatal(cs)
		}
	}
}

// BenchmarkBINDReconcile measures, against a real BIND, a first run that
// creates 200 services (one signed UPDATE each) and a run with nothing to
// do (one AXFR and a plan).
func BenchmarkBINDReconcile(b *testing.B) {
	desired := benchRecords(200)
	ctx := context.Background()
	b.Run("create-202", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			bind := testpeer.StartBIND(b, "example.org")
			p := &RFC2136{Server: bind.Addr, Zone: bind.Zone, KeyName: bind.KeyName, Algorithm: bind.Algorithm, Secret: bind.Secret}
			b.StartTimer()
			cur, err := p.Records(ctx)
			if err != nil {
				b.Fatal(err)
			}
			for _, c := range Plan(cur, desired, "homelab").Changes {
				if err := p.Apply(ctx, c); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("nothing-to-do-202", func(b *testing.B) {
		bind := testpeer.StartBIND(b, "example.org")
		p := &RFC2136{Server: bind.Addr, Zone: bind.Zone, KeyName: bind.KeyName, Algorithm: bind.Algorithm, Secret: bind.Secret}
		cur, _ := p.Records(ctx)
		for _, c := range Plan(cur, desired, "homelab").Changes {
			if err := p.Apply(ctx, c); err != nil {
				b.Fatal(err)
			}
		}
		for b.Loop() {
			cur, err := p.Records(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if cs := Plan(cur, desired, "homelab"); len(cs.Changes) != 0 {
				b.Fatal(cs.Changes)
			}
		}
	})
}

// BenchmarkServeQuery asks the embedded server, then BIND holding the same
// records, one UDP query at a time (latency on loopback, one client).
func BenchmarkServeQuery(b *testing.B) {
	ask := func(b *testing.B, addr string) {
		c := &dns.Client{}
		conn, err := c.Dial(addr)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		m := new(dns.Msg)
		m.SetQuestion("svc0042.example.org.", dns.TypeA)
		for b.Loop() {
			r, _, err := c.ExchangeWithConn(m, conn)
			if err != nil || len(r.Answer) != 2 {
				b.Fatalf("%v %v", r, err)
			}
		}
	}
	b.Run("labgate", func(b *testing.B) {
		s, err := Listen([]string{"127.0.0.1:0"}, nil)
		if err != nil {
			b.Fatal(err)
		}
		z := &zoneData{zone: "example.org", ns: "ns.example.org", ttl: 300, names: map[string][]Record{}, nodes: map[string]bool{"example.org": true}}
		for _, r := range benchRecords(1000) {
			z.names[r.Name] = append(z.names[r.Name], r)
			z.nodes[r.Name] = true
		}
		s.answers.Store(z)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- s.Run(ctx) }()
		defer func() { cancel(); <-done }()
		ask(b, s.Addrs()[0])
	})
	b.Run("bind", func(b *testing.B) {
		var lines []string
		for i := range 1000 {
			lines = append(lines, fmt.Sprintf("svc%04d IN CNAME private-relay", i))
		}
		lines = append(lines, "private-relay IN A 100.101.102.103")
		bind := testpeer.StartBIND(b, "example.org", lines...)
		ask(b, bind.Addr)
	})
}
