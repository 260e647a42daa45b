package dns

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// RFC2136 is a zone on an authoritative server that takes dynamic updates
// (RFC 2136) signed with a TSIG key and allows zone transfers (AXFR) with the
// same key: BIND, Knot, PowerDNS, Technitium. Every change is one UPDATE
// message whose prerequisites say what the plan saw, so the server applies
// all of it or nothing.
type RFC2136 struct {
	Server    string // host:port of the primary
	Zone      string // the zone, without trailing dot
	KeyName   string
	Algorithm string        // hmac-sha256, hmac-sha512, hmac-sha1
	Secret    string        // base64
	Timeout   time.Duration // of one exchange; 0: 10s
}

func (p *RFC2136) key() (name, alg string) {
	alg = map[string]string{"hmac-sha1": dns.HmacSHA1, "hmac-sha512": dns.HmacSHA512}[p.Algorithm]
	if alg == "" {
		alg = dns.HmacSHA256
	}
	return dns.Fqdn(strings.ToLower(p.KeyName)), alg
}

func (p *RFC2136) timeout() time.Duration {
	if p.Timeout > 0 {
		return p.Timeout
	}
	return 10 * time.Second
}

// dial connects to the server. The connection is closed when ctx ends, so
// that a stop or reload does not wait for a server that stopped answering.
func (p *RFC2136) dial(ctx context.Context) (*dns.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, p.timeout())
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(dctx, "tcp", p.Server)
	if err != nil {
		return nil, err
	}
	deadline, _ := dctx.Deadline()
	_ = c.SetDeadline(deadline.Add(p.timeout())) // the exchange gets its own timeout after dialing
	return &dns.Conn{Conn: &ctxConn{Conn: c, stop: context.AfterFunc(ctx, func() { c.Close() })}}, nil
}

// ctxConn is a connection closed by the end of a context (see dial).
type ctxConn struct {
	net.Conn
	stop func() bool
}

func (c *ctxConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

func (p *RFC2136) secrets() map[string]string {
	name, _ := p.key()
	return map[string]string{name: p.Secret}
}

// Records lists the zone by AXFR.
func (p *RFC2136) Records(ctx context.Context) ([]Record, error) {
	if _, err := base64.StdEncoding.DecodeString(p.Secret); err != nil {
		return nil, errors.New("the TSIG secret is not base64")
	}
	conn, err := p.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing %s by zone transfer: cannot reach %s over TCP (check dns.provider.server, that the server runs, and that TCP is open to it, not only UDP): %w", p.Zone, p.Server, err)
	}
	defer conn.Close()
	m := new(dns.Msg)
	m.SetAxfr(dns.Fqdn(p.Zone))
	name, alg := p.key()
	m.SetTsig(name, alg, 300, time.Now().Unix())
	tr := &dns.Transfer{Conn: conn, TsigSecret: p.secrets()}
	ch, err := tr.In(m, p.Server)
	if err != nil {
		return nil, fmt.Errorf("listing %s by zone transfer from %s: %w", p.Zone, p.Server, err)
	}
	sets := map[Key]*Record{}
	var keys []Key
	for env := range ch {
		if env.Error != nil {
			err = env.Error
			continue // drain
		}
		for _, rr := range env.RR {
			r := fromRR(rr)
			k := r.Key()
			if s, ok := sets[k]; ok {
				s.Values = append(s.Values, r.Values...)
				continue
			}
			keys = append(keys, k)
			sets[k] = &r
		}
	}
	if err != nil {
		if errors.Is(err, dns.ErrAuth) || strings.Contains(err.Error(), "bad xfr rcode: 9") && strings.Contains(err.Error(), "tsig") {
			// BIND refuses a zone it does not hold the way it refuses a
			// wrong key; an unsigned SOA query tells the two apart.
			if !p.holdsZone(ctx) {
				return nil, fmt.Errorf("%s is not authoritative for the zone %s: check dns.zone (or domain) and the server's zone statement: %w", p.Server, p.Zone, err)
			}
			return nil, p.keyRefused(err)
		}
		if strings.Contains(err.Error(), "bad xfr rcode: 5") || strings.Contains(err.Error(), "bad xfr rcode: 9") {
			return nil, fmt.Errorf("listing %s by zone transfer from %s: refused: allow the transfer for the key %s (allow-transfer { key %s; } in BIND): %w", p.Zone, p.Server, p.KeyName, p.KeyName, err)
		}
		return nil, fmt.Errorf("listing %s by zone transfer from %s: %w", p.Zone, p.Server, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("listing %s by zone transfer from %s: the transfer was empty", p.Zone, p.Server)
	}
	out := make([]Record, 0, len(keys))
	for _, k := range keys {
		out = append(out, Normalize(*sets[k]))
	}
	return out, nil
}

// fromRR converts one resource record into a one-value Record.
func fromRR(rr dns.RR) Record {
	h := rr.Header()
	r := Record{Name: normName(h.Name), Type: dns.TypeToString[h.Rrtype], TTL: h.Ttl}
	var v string
	switch rr := rr.(type) {
	case *dns.A:
		v = rr.A.String()
	case *dns.AAAA:
		v = rr.AAAA.String()
	case *dns.CNAME:
		v = normName(rr.Target)
	case *dns.TXT:
		v = strings.Join(rr.Txt, "")
	default:
		v = strings.TrimPrefix(rr.String(), h.String())
	}
	r.Values = []string{v}
	return r
}

// toRRs converts an RRset into resource records (fresh ones on every call:
// the update helpers of miekg/dns modify what they are given).
func toRRs(r Record) ([]dns.RR, error) {
	var out []dns.RR
	for _, v := range r.Values {
		h := dns.RR_Header{Name: dns.Fqdn(r.Name), Rrtype: dns.StringToType[r.Type], Class: dns.ClassINET, Ttl: r.TTL}
		if r.Type == "TXT" {
			out = append(out, &dns.TXT{Hdr: h, Txt: chunks(v)})
			continue
		}
		rr, err := dns.NewRR(fmt.Sprintf("%s %d IN %s %s", dns.Fqdn(r.Name), r.TTL, r.Type, v))
		if err != nil || rr == nil {
			return nil, fmt.Errorf("%s %s %q: not a valid record: %v", r.Name, r.Type, v, err)
		}
		out = append(out, rr)
	}
	return out, nil
}

// chunks splits a TXT value into character-strings of at most 255 bytes.
func chunks(v string) []string {
	var out []string
	for len(v) > 255 {
		out = append(out, v[:255])
		v = v[255:]
	}
	return append(out, v)
}

// rrset is the header of an RRset, for prerequisites about its existence.
func rrset(name, typ string) []dns.RR {
	return []dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.StringToType[typ], Class: dns.ClassINET}}}
}

// Apply makes one change as one UPDATE. Prerequisites: a create needs the
// RRset and its ownership record absent (and, for a CNAME, nothing else at
// the name; for other types, no CNAME there); an update or a delete needs
// the ownership record and the RRset exactly as listed.
func (p *RFC2136) Apply(ctx context.Context, c Change) error {
	rec, owner := c.Record, c.Owner
	m := new(dns.Msg)
	m.SetUpdate(dns.Fqdn(p.Zone))
	must := func(rrs []dns.RR, err error) []dns.RR {
		if err != nil {
			panic(err) // never: records come from Normalize'd plans; checked below
		}
		return rrs
	}
	for _, r := range []Record{rec, c.Old, owner} {
		if _, err := toRRs(r); err != nil {
			return err
		}
	}
	switch c.Action {
	case Create:
		m.RRsetNotUsed(rrset(rec.Name, rec.Type))
		if rec.Type == "CNAME" {
			m.NameNotUsed(rrset(rec.Name, "ANY"))
		} else {
			m.RRsetNotUsed(rrset(rec.Name, "CNAME"))
		}
		if owner.Name != "" {
			m.RRsetNotUsed(rrset(owner.Name, "TXT"))
		}
		m.Insert(must(toRRs(rec)))
		if owner.Name != "" {
			m.Insert(must(toRRs(owner)))
		}
	case Update:
		if owner.Name != "" {
			m.Used(must(toRRs(owner)))
		}
		if len(c.Old.Values) > 0 {
			m.Used(must(toRRs(c.Old)))
		} else {
			m.RRsetNotUsed(rrset(rec.Name, rec.Type))
		}
		m.RemoveRRset(rrset(rec.Name, rec.Type))
		m.Insert(must(toRRs(rec)))
	case Delete:
		if owner.Name != "" {
			m.Used(must(toRRs(owner)))
		}
		if len(rec.Values) > 0 {
			m.Used(must(toRRs(rec)))
			m.RemoveRRset(rrset(rec.Name, rec.Type))
		} else {
			m.RRsetNotUsed(rrset(rec.Name, rec.Type))
		}
		if owner.Name != "" {
			m.Remove(must(toRRs(owner)))
		}
	default:
		return fmt.Errorf("unknown action %q", c.Action)
	}
	if len(m.Ns) == 0 {
		return nil // a delete of an ownership record kept elsewhere: nothing to send
	}
	return p.update(ctx, m)
}

// update signs and sends an UPDATE and interprets its answer.
func (p *RFC2136) update(ctx context.Context, m *dns.Msg) error {
	name, alg := p.key()
	m.SetTsig(name, alg, 300, time.Now().Unix())
	conn, err := p.dial(ctx)
	if err != nil {
		return fmt.Errorf("updating %s at %s: %w", p.Zone, p.Server, err)
	}
	defer conn.Close()
	conn.TsigSecret = p.secrets()
	if err := conn.WriteMsg(m); err != nil {
		return fmt.Errorf("updating %s at %s: %w", p.Zone, p.Server, err)
	}
	r, err := conn.ReadMsg()
	if errors.Is(err, dns.ErrAuth) {
		return p.keyRefused(err)
	}
	if err != nil {
		return fmt.Errorf("updating %s at %s: %w", p.Zone, p.Server, err)
	}
	if r.IsTsig() == nil {
		// ReadMsg checks a signature that is there; one that is missing
		// is an answer anyone on the path could have made up.
		return fmt.Errorf("updating %s at %s: the answer (%s) is not signed with the TSIG key: it may not come from the server, and the change may not have been made", p.Zone, p.Server, dns.RcodeToString[r.Rcode])
	}
	switch r.Rcode {
	case dns.RcodeSuccess:
		return nil
	case dns.RcodeNXRrset, dns.RcodeYXRrset, dns.RcodeNameError, dns.RcodeYXDomain:
		return fmt.Errorf("%w (the server answered %s to the update's prerequisites)", ErrChanged, dns.RcodeToString[r.Rcode])
	case dns.RcodeRefused, dns.RcodeNotAuth:
		return fmt.Errorf("updating %s at %s: %s: allow updates for the key %s (allow-update { key %s; } in BIND)", p.Zone, p.Server, dns.RcodeToString[r.Rcode], p.KeyName, p.KeyName)
	}
	return fmt.Errorf("updating %s at %s: the server answered %s", p.Zone, p.Server, dns.RcodeToString[r.Rcode])
}

// holdsZone reports whether the server answers for the zone's SOA with
// authority. When it cannot be asked, it reports true (the key stays the
// suspect).
func (p *RFC2136) holdsZone(ctx context.Context) bool {
	conn, err := p.dial(ctx)
	if err != nil {
		return true
	}
	defer conn.Close()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(p.Zone), dns.TypeSOA)
	if err := conn.WriteMsg(m); err != nil {
		return true
	}
	r, err := conn.ReadMsg()
	if err != nil {
		return true
	}
	return r.Rcode == dns.RcodeSuccess && r.Authoritative
}

func (p *RFC2136) keyRefused(err error) error {
	return fmt.Errorf("%s did not accept the TSIG key %q: check tsig_name, tsig_algorithm and tsig_secret against the key in the server's config: %w", p.Server, p.KeyName, err)
}

// SetTXT adds one TXT value at fqdn (an identical value already there is left as is).
func (p *RFC2136) SetTXT(ctx context.Context, fqdn, value string) error {
	return p.txt(ctx, fqdn, value, true)
}

// DeleteTXT removes that one TXT value from fqdn.
func (p *RFC2136) DeleteTXT(ctx context.Context, fqdn, value string) error {
	return p.txt(ctx, fqdn, value, false)
}

func (p *RFC2136) txt(ctx context.Context, fqdn, value string, add bool) error {
	name := normName(fqdn)
	if !InZone(name, p.Zone) {
		return fmt.Errorf("%s is not in the zone %s", name, p.Zone)
	}
	m := new(dns.Msg)
	m.SetUpdate(dns.Fqdn(p.Zone))
	rr := &dns.TXT{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: chunks(value)}
	if add {
		m.Insert([]dns.RR{rr})
	} else {
		m.Remove([]dns.RR{rr})
	}
	return p.update(ctx, m)
}
