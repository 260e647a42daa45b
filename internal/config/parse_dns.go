package config

import (
	"strings"
	"time"
)

// dnsOptions builds the plain options of the dns section.
func (b *builder) dnsOptions(f fileDNS) DNS {
	d := DNS{Owner: f.Owner, Flatten: f.Flatten, Interval: time.Duration(f.Interval), Ownership: f.Ownership}
	if f.Owner == "" || strings.ContainsAny(f.Owner, `,="\ `) {
		b.fail("dns.owner", "%q is not an owner id (letters, digits, dashes; no spaces, commas, = or quotes)", f.Owner)
	}
	if f.TTL < 1 || f.TTL > 604800 {
		b.fail("dns.ttl", "%d is not a TTL from 1 to 604800 seconds", f.TTL)
	} else {
		d.TTL = uint32(f.TTL)
	}
	if d.Interval < 10*time.Second {
		b.fail("dns.interval", "%s is too short (at least 10s)", d.Interval)
	}
	if p := f.Provider; p != nil {
		if p.Proxied && p.Type != "cloudflare" {
			b.fail("dns.provider.proxied", "only cloudflare proxies records (remove proxied)")
		}
	}
	return d
}

// dnsZone sets the managed zone once the domain and the rest are known.
func (b *builder) dnsZone(f fileDNS, c *Config) {
	zone := c.Domain
	if f.Zone != "" {
		if z, ok := hostname(f.Zone); ok && !strings.HasPrefix(z, "*") {
			zone = z
		} else {
			b.fail("dns.zone", "%q is not a DNS name", f.Zone)
			return
		}
	}
	c.DNS.Zone = zone // empty without a domain: internal/dns refuses to manage or serve it
}
