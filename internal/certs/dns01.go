package certs

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/mholt/acmez/v3/acme"
	"github.com/miekg/dns"
)

// ChallengeDNS is what DNS-01 needs from a DNS provider: labgate's own
// providers (internal/dns) implement it for the public zone.
//
// The apex and the wildcard of a domain are validated at the same name
// (_acme-challenge.example.org) at the same time, so SetTXT must add a value
// next to the ones already there, and DeleteTXT must remove exactly the
// value given.
type ChallengeDNS interface {
	SetTXT(ctx context.Context, fqdn, value string) error    // add one TXT value; other values at fqdn stay
	DeleteTXT(ctx context.Context, fqdn, value string) error // remove exactly that one value
}

// dns01Solver solves DNS-01 through a ChallengeDNS (an acmez.Solver with
// Wait). It needs no zone detection: the provider knows its zone, which
// also makes it work with DNS servers that do not answer SOA queries.
type dns01Solver struct {
	dns       ChallengeDNS
	resolvers []string // host:port asked whether the value is visible
	interval  time.Duration
	timeout   time.Duration
}

func (s *dns01Solver) Present(ctx context.Context, chal acme.Challenge) error {
	if err := s.dns.SetTXT(ctx, dns.Fqdn(chal.DNS01TXTRecordName()), chal.DNS01KeyAuthorization()); err != nil {
		return fmt.Errorf("setting the DNS-01 record %s: %w", chal.DNS01TXTRecordName(), err)
	}
	return nil
}

// Wait returns once every resolver answers the challenge's value at its
// name (the CA will look there too), or fails after the timeout.
func (s *dns01Solver) Wait(ctx context.Context, chal acme.Challenge) error {
	name, want := dns.Fqdn(chal.DNS01TXTRecordName()), chal.DNS01KeyAuthorization()
	resolvers := s.resolvers
	if len(resolvers) == 0 {
		conf, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return fmt.Errorf("no dns.resolvers to check DNS-01 records with, and /etc/resolv.conf: %w", err)
		}
		for _, srv := range conf.Servers {
			resolvers = append(resolvers, net.JoinHostPort(srv, conf.Port))
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var lastErr error
	for {
		lastErr = nil
		for _, r := range resolvers {
			ok, err := hasTXT(ctx, r, name, want)
			if err == nil && !ok {
				err = fmt.Errorf("%s does not show the new value yet", r)
			}
			if err != nil {
				lastErr = err
				break
			}
		}
		if lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the DNS-01 record %s did not appear: %w", name, lastErr)
		case <-time.After(s.interval):
		}
	}
}

func (s *dns01Solver) CleanUp(ctx context.Context, chal acme.Challenge) error {
	// Cleanup runs also when ctx was cancelled: give it its own time.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := s.dns.DeleteTXT(ctx, dns.Fqdn(chal.DNS01TXTRecordName()), chal.DNS01KeyAuthorization()); err != nil {
		return fmt.Errorf("removing the DNS-01 record %s: %w", chal.DNS01TXTRecordName(), err)
	}
	return nil
}

// hasTXT asks server whether name has the TXT value want (over TCP after a
// truncated UDP answer).
func hasTXT(ctx context.Context, server, name, want string) (bool, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeTXT)
	m.RecursionDesired = true
	c := &dns.Client{Timeout: 5 * time.Second}
	in, _, err := c.ExchangeContext(ctx, m, server)
	if err == nil && in.Truncated {
		c.Net = "tcp"
		in, _, err = c.ExchangeContext(ctx, m, server)
	}
	if err != nil {
		return false, err
	}
	if in.Rcode != dns.RcodeSuccess && in.Rcode != dns.RcodeNameError {
		return false, fmt.Errorf("%s answered %s for %s TXT", server, dns.RcodeToString[in.Rcode], name)
	}
	for _, rr := range in.Answer {
		if txt, ok := rr.(*dns.TXT); ok && strings.EqualFold(txt.Hdr.Name, name) && slices.Contains([]string{strings.Join(txt.Txt, "")}, want) {
			return true, nil
		}
	}
	return false, nil
}
