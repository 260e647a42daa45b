package dns

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labgate/labgate/internal/listen"

	"github.com/miekg/dns"

	"github.com/labgate/labgate/internal/config"
)

// Server is labgate's embedded authoritative DNS server for the lab's zone
// (split DNS for a tailnet or LAN): it answers the records of SplitView, in
// which every service name leads to the gateway's private address. It does
// no recursion: names outside the zone are REFUSED.
//
// The sockets are bound once by Listen; Update swaps the answers in without
// rebinding.
type Server struct {
	log     *slog.Logger
	udp     []net.PacketConn
	tcp     []net.Listener
	answers atomic.Pointer[zoneData]
}

// zoneData is one config's answers.
type zoneData struct {
	zone   string
	ns     string              // the name server's name
	serial uint32              // changes with the answers
	ttl    uint32              // of SOA, NS and negative answers
	names  map[string][]Record // by owner name, wildcards included
	nodes  map[string]bool     // every name that exists, empty non-terminals included
}

// Listen binds UDP and TCP on every address (host:port).
func Listen(addrs []string, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{log: log}
	for _, a := range addrs {
		pc, ln, err := listenBoth(a, log)
		if err != nil {
			s.close()
			return nil, err
		}
		s.udp, s.tcp = append(s.udp, pc), append(s.tcp, ln)
	}
	return s, nil
}

// listenBoth binds UDP and TCP on the same port of addr. With port 0 the
// port is the one the UDP socket got, tried again a few times when TCP has
// it in use.
func listenBoth(addr string, log *slog.Logger) (net.PacketConn, net.Listener, error) {
	_, port, _ := net.SplitHostPort(addr)
	for attempt := 0; ; attempt++ {
		pc, err := listen.UDP(addr, log)
		if err != nil {
			return nil, nil, fmt.Errorf("dns.serve: listening on %s/udp: %w", addr, err)
		}
		ln, err := listen.TCP(pc.LocalAddr().String(), nil)
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port != "0" || attempt == 10 {
			return nil, nil, fmt.Errorf("dns.serve: listening on %s/tcp: %w", addr, err)
		}
	}
}

func (s *Server) close() {
	for _, c := range s.udp {
		c.Close()
	}
	for _, l := range s.tcp {
		l.Close()
	}
}

// Addrs returns the bound addresses (UDP and TCP share each port).
func (s *Server) Addrs() []string {
	var out []string
	for _, c := range s.udp {
		out = append(out, c.LocalAddr().String())
	}
	return out
}

// Update answers from cfg from now on.
func (s *Server) Update(cfg *config.Config) {
	s.answers.Store(newZoneData(cfg))
}

func newZoneData(cfg *config.Config) *zoneData {
	d := DesiredRecords(cfg, SplitView)
	z := &zoneData{zone: d.Zone, ttl: cfg.DNS.TTL, names: map[string][]Record{}, nodes: map[string]bool{d.Zone: true},
		serial: uint32(time.Now().Unix())}
	if z.ttl == 0 {
		z.ttl = 300
	}
	z.ns = "ns." + d.Zone
	if p := cfg.Gateway.Private; p != nil && InZone(p.FQDN, d.Zone) && len(PrivateAddress(p)) > 0 {
		z.ns = p.FQDN
	}
	for _, r := range d.Records {
		z.names[r.Name] = append(z.names[r.Name], r)
		for n := r.Name; InZone(n, d.Zone); {
			z.nodes[n] = true
			_, parent, ok := strings.Cut(n, ".")
			if !ok {
				break
			}
			n = parent
		}
	}
	return z
}

// Run serves until ctx is done, then closes the sockets.
func (s *Server) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	var servers []*dns.Server
	for _, pc := range s.udp {
		servers = append(servers, &dns.Server{PacketConn: pc, Handler: s})
	}
	for _, ln := range s.tcp {
		servers = append(servers, &dns.Server{Listener: ln, Handler: s})
	}
	errs := make(chan error, len(servers))
	for _, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.ActivateAndServe(); err != nil {
				errs <- err
			}
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	for _, srv := range servers {
		_ = srv.Shutdown()
	}
	s.close()
	wg.Wait()
	return err
}

// maxUDPSize is the largest answer sent over UDP, whatever size a query's
// EDNS0 offers: 1232 bytes fit any path without fragments (DNS flag day
// 2020), and keep what a spoofed query can make the server send small.
const maxUDPSize = 1232

// ServeDNS answers one query.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	_, udp := w.RemoteAddr().(*net.UDPAddr)
	m := s.answer(req, udp)
	if udp {
		size := dns.MinMsgSize
		if o := req.IsEdns0(); o != nil {
			size = min(max(int(o.UDPSize()), size), maxUDPSize)
		}
		m.Truncate(size)
	}
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("dns: writing an answer", "error", err)
	}
}

// answer answers req; udp says it came over UDP, where ANY queries get the
// minimal answer of RFC 8482 (a source address over UDP may be spoofed).
func (s *Server) answer(req *dns.Msg, udp bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = false
	if req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		return m
	}
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	if o := req.IsEdns0(); o != nil {
		m.SetEdns0(maxUDPSize, false)
		if o.Version() != 0 {
			m.Rcode = dns.RcodeBadVers // the OPT record carries its upper bits
			return m
		}
	}
	z := s.answers.Load()
	q := req.Question[0]
	name := normName(q.Name)
	if z == nil || q.Qclass != dns.ClassINET || !InZone(name, z.zone) {
		m.Rcode = dns.RcodeRefused
		return m
	}
	m.Authoritative = true
	if q.Qtype == dns.TypeANY && udp {
		if _, exists := z.lookup(name); exists || name == z.zone {
			m.Answer = append(m.Answer, &dns.HINFO{Hdr: z.hdr(q.Name, dns.TypeHINFO, z.ttl), Cpu: "RFC8482"})
			return m
		}
	}
	z.resolve(m, name, q.Name, q.Qtype, 0)
	return m
}

// resolve adds to m the answer for (name, qtype), following CNAMEs inside
// the zone. owner is the name as asked (case kept).
func (z *zoneData) resolve(m *dns.Msg, name, owner string, qtype uint16, depth int) {
	if name == z.zone && (qtype == dns.TypeSOA || qtype == dns.TypeNS) {
		if qtype == dns.TypeSOA {
			m.Answer = append(m.Answer, z.soa())
		} else {
			m.Answer = append(m.Answer, &dns.NS{Hdr: z.hdr(owner, dns.TypeNS, z.ttl), Ns: dns.Fqdn(z.ns)})
		}
		return
	}
	recs, exists := z.lookup(name)
	if !exists {
		if depth == 0 {
			m.Rcode = dns.RcodeNameError
		}
		m.Ns = append(m.Ns, z.soa())
		return
	}
	for _, r := range recs {
		if r.Type == "CNAME" && qtype != dns.TypeCNAME {
			m.Answer = append(m.Answer, &dns.CNAME{Hdr: z.hdr(owner, dns.TypeCNAME, r.TTL), Target: dns.Fqdn(r.Values[0])})
			if t := r.Values[0]; InZone(t, z.zone) && depth < 8 {
				z.resolve(m, t, dns.Fqdn(t), qtype, depth+1)
			}
			return
		}
	}
	found := false
	for _, r := range recs {
		if qtype != dns.TypeANY && dns.StringToType[r.Type] != qtype {
			continue
		}
		rrs, err := toRRs(r)
		if err != nil {
			continue
		}
		for _, rr := range rrs {
			rr.Header().Name = owner
			m.Answer = append(m.Answer, rr)
			found = true
		}
	}
	if !found && len(m.Answer) == 0 {
		m.Ns = append(m.Ns, z.soa()) // NODATA
	}
}

// lookup returns the records at name, or at the wildcard that covers it
// (RFC 4592: only when name does not exist, empty non-terminals included).
func (z *zoneData) lookup(name string) ([]Record, bool) {
	if z.nodes[name] {
		return z.names[name], true
	}
	for n := name; n != z.zone; {
		_, parent, ok := strings.Cut(n, ".")
		if !ok {
			break
		}
		if recs, ok := z.names["*."+parent]; ok {
			return recs, true
		}
		if z.nodes[parent] {
			break // the closest encloser exists and has no wildcard
		}
		n = parent
	}
	return nil, false
}

func (z *zoneData) hdr(name string, t uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: dns.Fqdn(name), Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
}

func (z *zoneData) soa() dns.RR {
	return &dns.SOA{Hdr: z.hdr(z.zone, dns.TypeSOA, z.ttl), Ns: dns.Fqdn(z.ns), Mbox: dns.Fqdn("hostmaster." + z.zone),
		Serial: z.serial, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: z.ttl}
}
