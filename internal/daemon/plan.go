package daemon

import (
	"fmt"
	"strings"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/gateway/l4"
)

// PlannedListener is one socket serve would open for cfg.
type PlannedListener struct {
	Proto string // "tcp", "udp", "udp+tcp"
	Addr  string // as written in the file
	What  string // what it serves, for people
}

// Listeners returns the sockets serve opens for cfg, from the same functions
// serve uses: the dry run behind the listeners section of `labgate plan`.
func Listeners(cfg *config.Config) []PlannedListener {
	var out []PlannedListener
	add := func(proto, addr, what string) {
		for i, l := range out {
			if l.Proto == proto && l.Addr == addr { // one socket, the class chosen per source
				out[i].What += "; " + what
				return
			}
		}
		out = append(out, PlannedListener{proto, addr, what})
	}
	if p := cfg.Gateway.Public; p != nil {
		relays := make([]string, len(p.TrustedRelays))
		for i, r := range p.TrustedRelays {
			relays[i] = r.String()
		}
		for _, a := range p.HTTPS {
			add("tcp", a, "public HTTPS, PROXY header required from "+strings.Join(relays, ", "))
		}
		for _, a := range p.HTTP {
			add("tcp", a, "public HTTP, PROXY header required from "+strings.Join(relays, ", "))
		}
	}
	if p := cfg.Gateway.Private; p != nil {
		allow := "every source"
		if len(p.Allow) > 0 {
			var s []string
			for _, a := range p.Allow {
				s = append(s, a.String())
			}
			allow = strings.Join(s, ", ")
		}
		for _, a := range p.HTTPS {
			add("tcp", a, "private HTTPS, from "+allow)
		}
		for _, a := range p.HTTP {
			add("tcp", a, "private HTTP, from "+allow)
		}
	}
	for _, l := range l4.Listeners(cfg) {
		var names []string
		for _, s := range cfg.Services {
			routes := s.TCP
			if l.Proto == "udp" {
				routes = s.UDP
			}
			for _, r := range routes {
				if r.Port == l.Port && (l.Class == config.Private || s.Expose == config.Public) {
					names = append(names, s.Name)
				}
			}
		}
		add(l.Proto, l.Addr, fmt.Sprintf("%s %s port of %s", l.Class, l.Proto, strings.Join(names, ", ")))
	}
	if s := cfg.DNS.Serve; s != nil {
		for _, a := range s.Listen {
			add("udp+tcp", a, "embedded DNS server for "+cfg.DNS.Zone)
		}
	}
	if cfg.Gateway.Admin != "" {
		add("tcp", cfg.Gateway.Admin, "admin: status page, /api, /metrics, /healthz")
	}
	return out
}
