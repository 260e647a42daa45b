package certs

import (
	"context"
	"fmt"
	"net"
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
	authPort  string // port of the authoritative servers; "" is 53
}

func (s *dns01Solver) Present(ctx context.Context, chal acme.Challenge) error {
	if err := s.dns.SetTXT(ctx, dns.Fqdn(chal.DNS01TXTRecordName()), chal.DNS01KeyAuthorization()); err != nil {
		return fmt.Errorf("setting the DNS-01 record %s: %w", chal.DNS01TXTRecordName(), err)
	}
	return nil
}

// Wait returns once the challenge's value is visible where the CA will
// look, or fails after the timeout. Like certmagic, it asks the zone's
// authoritative servers (found through the resolvers: SOA, then NS), so a
// recursive resolver's cached "no such name" does not hold it up; when the
// resolvers are the zone's servers themselves (they answer with authority)
// or the zone's servers cannot be found, it asks the resolvers.
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
	servers, recursive := s.authoritative(ctx, name, resolvers), false
	if len(servers) == 0 {
		servers, recursive = resolvers, true
	}
	var lastErr error
	for {
		lastErr = nil
		for _, r := range servers {
			ok, err := hasTXT(ctx, r, name, want, recursive)
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

// authoritative returns host:port of the authoritative servers of name's
// zone, asking resolvers, or nil when they cannot be found.
func (s *dns01Solver) authoritative(ctx context.Context, name string, resolvers []string) []string {
	port := s.authPort
	if port == "" {
		port = "53"
	}
	zone := ""
	for _, i := range dns.Split(name) {
		if in, err := query(ctx, resolvers, name[i:], dns.TypeSOA); err == nil && in.Rcode == dns.RcodeSuccess {
			for _, rr := range in.Answer {
				if soa, ok := rr.(*dns.SOA); ok && strings.EqualFold(soa.Hdr.Name, name[i:]) {
					zone = name[i:]
				}
			}
		}
		if zone != "" {
			break
		}
	}
	if zone == "" {
		return nil
	}
	// Resolvers that are themselves the zone's servers (they answer its SOA
	// with authority: dns.resolvers names the primary) are asked directly,
	// on their own port, which the NS records cannot say.
	if own := authoritativeResolvers(ctx, resolvers, zone); len(own) == len(resolvers) {
		return own
	}
	in, err := query(ctx, resolvers, zone, dns.TypeNS)
	if err != nil {
		return nil
	}
	var out []string
	for _, rr := range in.Answer {
		ns, ok := rr.(*dns.NS)
		if !ok {
			continue
		}
		for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
			a, err := query(ctx, resolvers, ns.Ns, t)
			if err != nil {
				continue
			}
			for _, rr := range a.Answer {
				switch rr := rr.(type) {
				case *dns.A:
					out = append(out, net.JoinHostPort(rr.A.String(), port))
				case *dns.AAAA:
					out = append(out, net.JoinHostPort(rr.AAAA.String(), port))
				}
			}
			if len(out) > 0 {
				break // one address per server is enough
			}
		}
	}
	return out
}

// authoritativeResolvers returns the resolvers that answer zone's SOA with
// the authoritative flag.
func authoritativeResolvers(ctx context.Context, resolvers []string, zone string) []string {
	var out []string
	for _, r := range resolvers {
		m := new(dns.Msg)
		m.SetQuestion(zone, dns.TypeSOA)
		m.RecursionDesired = false
		in, err := exchange(ctx, m, r)
		if err != nil || in.Rcode != dns.RcodeSuccess || !in.Authoritative {
			continue
		}
		for _, rr := range in.Answer {
			if soa, ok := rr.(*dns.SOA); ok && strings.EqualFold(soa.Hdr.Name, zone) {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

// query asks the resolvers in turn for name/qtype, recursively.
func query(ctx context.Context, resolvers []string, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	var lastErr error
	for _, r := range resolvers {
		in, err := exchange(ctx, m, r)
		if err == nil {
			return in, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// exchange sends m to server over UDP, and over TCP after a truncated answer.
func exchange(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error) {
	c := &dns.Client{Timeout: 5 * time.Second}
	in, _, err := c.ExchangeContext(ctx, m, server)
	if err == nil && in.Truncated {
		c.Net = "tcp"
		in, _, err = c.ExchangeContext(ctx, m, server)
	}
	return in, err
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

// hasTXT asks server whether name has the TXT value want.
func hasTXT(ctx context.Context, server, name, want string, recursive bool) (bool, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeTXT)
	m.RecursionDesired = recursive
	in, err := exchange(ctx, m, server)
	if err != nil {
		return false, err
	}
	if in.Rcode != dns.RcodeSuccess && in.Rcode != dns.RcodeNameError {
		return false, fmt.Errorf("%s answered %s for %s TXT", server, dns.RcodeToString[in.Rcode], name)
	}
	for _, rr := range in.Answer {
		if txt, ok := rr.(*dns.TXT); ok && strings.EqualFold(txt.Hdr.Name, name) && strings.Join(txt.Txt, "") == want {
			return true, nil
		}
	}
	return false, nil
}
