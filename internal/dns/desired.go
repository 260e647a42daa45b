package dns

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/labgate/labgate/internal/config"
)

// Desired is what the lab's DNS should hold.
type Desired struct {
	Zone    string
	Records []Record // normalized, sorted by name and type
	// Notes say what is left out and why (a host outside the zone, a name
	// without address), for `labgate plan` and the logs.
	Notes []string
}

// View selects which answers a name gets.
type View int

const (
	// PublicView is the zone on the provider: public services point at the
	// relay, private services at the gateway's private address.
	PublicView View = iota
	// SplitView is what the embedded server answers VPN and LAN clients:
	// every service points at the gateway's private address, which serves
	// public services too, so they skip the relay.
	SplitView
)

// DesiredRecords returns the records cfg asks for in view.
func DesiredRecords(cfg *config.Config, view View) Desired {
	d := Desired{Zone: cfg.DNS.Zone}
	ttl := cfg.DNS.TTL
	if ttl == 0 {
		ttl = 300
	}
	recs := map[Key]Record{}
	add := func(r Record) {
		r.TTL = ttl
		r = Normalize(r)
		if _, dup := recs[r.Key()]; !dup {
			recs[r.Key()] = r
		}
	}
	// addrs adds A and AAAA records for name.
	addrs := func(name string, ips []netip.Addr, proxied bool) {
		var v4, v6 []string
		for _, ip := range ips {
			if ip.Unmap().Is4() {
				v4 = append(v4, ip.Unmap().String())
			} else {
				v6 = append(v6, ip.String())
			}
		}
		if len(v4) > 0 {
			add(Record{Name: name, Type: "A", Values: v4, Proxied: proxied})
		}
		if len(v6) > 0 {
			add(Record{Name: name, Type: "AAAA", Values: v6, Proxied: proxied})
		}
	}
	managed := func(name, what string) bool {
		if InZone(name, d.Zone) {
			return true
		}
		d.Notes = append(d.Notes, fmt.Sprintf("%s (%s): outside the zone %s", name, what, d.Zone))
		return false
	}

	// The two entry points.
	var relayName, privName string
	var relayIPs, privIPs []netip.Addr
	if r := cfg.Relay; r != nil && r.FQDN != "" {
		relayName, relayIPs = r.FQDN, r.PublicIPs
		if len(relayIPs) == 0 {
			d.Notes = append(d.Notes, fmt.Sprintf("%s (relay): relay.public_ips is empty, no address record", relayName))
		}
	}
	if p := cfg.Gateway.Private; p != nil && p.FQDN != "" {
		privName, privIPs = p.FQDN, PrivateAddress(p)
		if len(privIPs) == 0 {
			d.Notes = append(d.Notes, fmt.Sprintf("%s (private name): the private listeners have no specific IP address; set gateway.private.address", privName))
		}
	}
	if view == SplitView {
		// Over the VPN, the relay's name still points at the relay.
		relayName, relayIPs = privName, privIPs
	}
	if relayName != "" && view == PublicView && managed(relayName, "relay") {
		addrs(relayName, relayIPs, false)
	}
	if privName != "" && managed(privName, "private name") {
		addrs(privName, privIPs, false)
	}
	if view == SplitView && cfg.Relay != nil && cfg.Relay.FQDN != "" && InZone(cfg.Relay.FQDN, d.Zone) {
		addrs(cfg.Relay.FQDN, cfg.Relay.PublicIPs, false)
	}

	// Services point at one of them. A host of both a public and a private
	// service is public (it must be reachable through the relay).
	type target struct {
		name    string
		ips     []netip.Addr
		proxied bool
		public  bool
		service string
	}
	hosts := map[string]target{}
	var order []string
	for _, s := range cfg.Services {
		t := target{name: privName, ips: privIPs, service: s.Name}
		if s.Expose == config.Public {
			t = target{name: relayName, ips: relayIPs, public: true, service: s.Name}
			t.proxied = view == PublicView && cfg.DNS.Provider != nil && cfg.DNS.Provider.Proxied &&
				s.HTTP() && len(s.TCP)+len(s.UDP) == 0
		}
		for _, h := range s.Hosts {
			prev, seen := hosts[h]
			if !seen {
				order = append(order, h)
			}
			if !seen || s.Expose == config.Public && prev.name != relayName {
				hosts[h] = t
			}
		}
	}
	// The public status page answers on a host of its own, like a public service.
	if sp := cfg.Status.Public; sp != nil && sp.Host != "" {
		if _, seen := hosts[sp.Host]; !seen {
			order = append(order, sp.Host)
			hosts[sp.Host] = target{name: relayName, ips: relayIPs, public: true, service: "status page"}
		}
	}
	for _, h := range order {
		t := hosts[h]
		what := "service " + t.service
		if !managed(h, what) {
			continue
		}
		if h == relayName || h == privName {
			continue // the entry point's own record
		}
		if t.name == "" {
			missing := "gateway.private section"
			if t.public {
				missing = "relay section"
			}
			d.Notes = append(d.Notes, fmt.Sprintf("%s (%s): nothing to point at (no %s)", h, what, missing))
			continue
		}
		flatten := cfg.DNS.Flatten || t.proxied || h == d.Zone
		if !flatten {
			add(Record{Name: h, Type: "CNAME", Values: []string{t.name}})
			continue
		}
		if len(t.ips) == 0 {
			d.Notes = append(d.Notes, fmt.Sprintf("%s (%s): flattened, but %s has no address", h, what, t.name))
			continue
		}
		addrs(h, t.ips, t.proxied)
	}
	for _, k := range sortedKeys(recs) {
		d.Records = append(d.Records, recs[k])
	}
	return d
}

// PrivateAddress is what the private name resolves to: gateway.private.address,
// or else the specific IP addresses the private listeners bind.
func PrivateAddress(p *config.PrivateListeners) []netip.Addr {
	if len(p.Address) > 0 {
		return p.Address
	}
	var out []netip.Addr
	for _, hp := range slices.Concat(p.HTTPS, p.HTTP) {
		host, _, err := net.SplitHostPort(hp)
		if err != nil {
			continue
		}
		a, err := netip.ParseAddr(host)
		if err != nil || a.IsUnspecified() || slices.Contains(out, a.Unmap()) {
			continue
		}
		out = append(out, a.Unmap())
	}
	return out
}
