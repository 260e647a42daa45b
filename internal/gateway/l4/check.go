package l4

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/labgate/labgate/internal/config"
)

// Check refuses layer-4 configurations that would not work or would garble
// traffic, with every problem at once as config.Errors (File is cfg.Path;
// paths name the config fields, without line numbers):
//
//   - a tcp port that would be bound where an HTTP(S) listener or the admin
//     address already listens (the same host, or either host unspecified);
//   - the same port in two services (per protocol; config.Parse refuses that
//     too, Check keeps configs built otherwise honest);
//   - a public tcp or udp port without gateway.public: the relay would not
//     forward it;
//   - a public tcp port 80 or 443, which the relay uses for HTTP(S);
//   - proxy_protocol v1 on a udp port: v1 has no UDP form (v2 puts one
//     header in each datagram).
//
// It is pure: it binds and dials nothing. New calls it.
func Check(cfg *config.Config) error {
	var errs config.Errors
	fail := func(path, format string, args ...any) {
		errs = append(errs, cfg.Errorf(path, format, args...))
	}

	// Every address labgate binds besides the tcp ports.
	type bound struct {
		path, addr, host string
		port             int
	}
	var others []bound
	addBound := func(path string, addrs []string, indexed bool) {
		for i, a := range addrs {
			h, p, err := net.SplitHostPort(a)
			n, perr := strconv.Atoi(p)
			if err != nil || perr != nil {
				continue // config.Parse reports it
			}
			bp := path
			if indexed {
				bp = fmt.Sprintf("%s[%d]", path, i)
			}
			others = append(others, bound{bp, a, h, n})
		}
	}
	if p := cfg.Gateway.Public; p != nil {
		addBound("gateway.public.https", p.HTTPS, true)
		addBound("gateway.public.http", p.HTTP, true)
	}
	if p := cfg.Gateway.Private; p != nil {
		addBound("gateway.private.https", p.HTTPS, true)
		addBound("gateway.private.http", p.HTTP, true)
	}
	if cfg.Gateway.Admin != "" {
		addBound("gateway.admin", []string{cfg.Gateway.Admin}, false)
	}
	pub, priv := listenHosts(cfg)

	used := map[string]string{} // "tcp/25" -> "services[1].tcp[0] (mail)"
	for i, s := range cfg.Services {
		for _, set := range []struct {
			proto  string
			routes []config.L4Route
		}{{"tcp", s.TCP}, {"udp", s.UDP}} {
			for j, r := range set.routes {
				path := fmt.Sprintf("services[%d].%s[%d]", i, set.proto, j)
				key := set.proto + "/" + strconv.Itoa(r.Port)
				if prev, dup := used[key]; dup {
					fail(path+".port", "%s port %d is also used by %s: a port forwards to one backend; pick another port", set.proto, r.Port, prev)
				} else {
					used[key] = fmt.Sprintf("%s (%s)", path, s.Name)
				}
				if s.Expose == config.Public && cfg.Gateway.Public == nil {
					fail(path, "public %s port %d, but there is no gateway.public: the relay would not forward it: add gateway.public (or set expose: private)", set.proto, r.Port)
				}
				if set.proto == "udp" && r.ProxyProtocol == "v1" {
					fail(path+".proxy_protocol", "udp port %d: PROXY protocol v1 has no UDP form: use proxy_protocol: v2 (one header in each datagram, if the backend expects it) or none", r.Port)
				}
				if set.proto != "tcp" {
					continue
				}
				if s.Expose == config.Public && (r.Port == 80 || r.Port == 443) {
					fail(path+".port", "public tcp port %d: the relay uses 80 and 443 for HTTP(S); pick another port (or set expose: private)", r.Port)
				}
				hosts := priv
				if s.Expose == config.Public {
					hosts = append(append([]string(nil), pub...), priv...)
				}
				for _, o := range others {
					if o.port == r.Port && overlaps(hosts, o.host) {
						fail(path+".port", "tcp port %d collides with %s (%s), which listens on the same address: pick another port", r.Port, o.path, o.addr)
					}
				}
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// overlaps reports whether binding a port on any of hosts would conflict
// with the same port on host: the same host, or either one unspecified.
func overlaps(hosts []string, host string) bool {
	for _, h := range hosts {
		if h == host || unspecified(h) || unspecified(host) {
			return true
		}
	}
	return false
}

func unspecified(host string) bool {
	if host == "" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsUnspecified()
}
