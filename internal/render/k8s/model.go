package k8s

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/labgate/labgate/internal/config"
)

// The model is what the lab asks of the cluster, independent of how it is
// spelled: the Ingress and Gateway API emitters read it, never the config.

type model struct {
	namespace string
	names     config.Kubernetes
	domain    string
	routes    []*route   // services reached by host, by name
	l4        []*l4Route // tcp and udp ports, by protocol and port
	backends  []*backend // Services labgate renders, by name
	// wildcard is the Certificate for private services, when tls.private_wildcard is set.
	wildcard  *wildcardCert
	monitors  []*monitor
	dnsSecret *dnsSecret
	// entryPoints are the address records of relay.name and
	// gateway.private.name, which the services' CNAMEs point at.
	entryPoints []dnsRecord
}

type dnsRecord struct {
	name, recordType string
	targets          []string
}

// route is one service reached by host name: HTTP, or TLS passed through.
type route struct {
	name        string
	class       config.Class
	hosts       []string
	path        string
	passthrough bool
	allowHTTP   bool
	to          serviceRef
	https       bool   // the backend speaks HTTPS
	serverName  string // backend_tls.server_name
	tlsSecret   string // "" for passthrough
	wildcard    bool   // the certificate is the private wildcard: no per-service issuance
	dnsTarget   string
}

// l4Route is one tcp or udp port forwarded to a backend.
type l4Route struct {
	service       string
	class         config.Class
	protocol      string // "TCP", "UDP"
	port          int32
	to            serviceRef
	proxyProtocol bool
}

// serviceRef is the Service and port a route sends to.
type serviceRef struct {
	name string
	port int32
}

// backend is a Service labgate renders for addresses outside the cluster:
// selector-less with EndpointSlices for IP addresses, ExternalName for a host name.
type backend struct {
	name         string
	service      string // the labgate service it belongs to
	portName     string
	protocol     string
	appProtocol  string
	port         int32
	externalName string
	endpoints    []netip.AddrPort // IP backends
}

type wildcardCert struct {
	name, secret, dnsName string
}

// monitor is how a service is watched: metrics scraped, health probed.
type monitor struct {
	service string
	// metrics
	metricsPath   string
	scheme        string
	serviceScrape string   // a rendered Service to scrape through a ServiceMonitor, or ""
	targets       []string // host:port scraped by a ScrapeConfig when serviceScrape is ""
	health        *config.Health
	probeURLs     []string
	alert         []string
}

type dnsSecret struct {
	keys []dnsSecretKey
}

type dnsSecretKey struct{ secretKey, property string }

// build turns the config into the model, with every problem that keeps a
// part of it from being rendered as a positioned error.
func build(cfg *config.Config, opts Options) (*model, config.Errors) {
	m := &model{namespace: cfg.Kubernetes.Namespace, names: cfg.Kubernetes, domain: cfg.Domain}
	if opts.Namespace != "" {
		m.namespace = opts.Namespace
	}
	var errs config.Errors
	fail := func(path, format string, args ...any) { errs = append(errs, cfg.Errorf(path, format, args...)) }
	used := map[string]string{} // Service name -> path that renders it
	claim := func(path, name string) bool {
		if prev, ok := used[name]; ok {
			fail(path, "the Service %q is already rendered for %s: rename one service", name, prev)
			return false
		}
		if len(name) > 63 {
			fail(path, "the Service name %q is longer than 63 characters: shorten the service's name", name)
			return false
		}
		used[name] = path
		return true
	}
	if cfg.TLS.PrivateWildcard && cfg.Domain != "" {
		m.wildcard = &wildcardCert{name: "private-wildcard", secret: "private-wildcard-tls", dnsName: "*." + cfg.Domain}
	}
	if p := cfg.DNS.Provider; p != nil {
		switch p.Type {
		case "cloudflare":
			m.dnsSecret = &dnsSecret{keys: []dnsSecretKey{{"api-token", "api_token"}}}
		case "rfc2136":
			m.dnsSecret = &dnsSecret{keys: []dnsSecretKey{{"tsig-secret", "tsig_secret"}}}
		}
	}
	m.entryPoints = entryPoints(cfg)
	for i, s := range cfg.Services {
		path := fmt.Sprintf("services[%d]", i)
		var r *route
		switch {
		case s.Static != "":
			fail(path+".static", "a static directory cannot be rendered for Kubernetes: serve it from a web server in the cluster and make this service's backend that server")
		case s.Echo:
			fail(path+".echo", "echo is a labgate diagnostic and has no Kubernetes equivalent: remove the service from the rendered file or give it a backend")
		case s.Passthrough != nil:
			r = &route{passthrough: true}
			host, port, _ := net.SplitHostPort(s.Passthrough.Backend)
			name := s.Name
			if s.Kubernetes.Service != "" {
				r.to = serviceRef{s.Kubernetes.Service, atoi32(port)}
			} else if claim(path, name) {
				b, ok := hostBackend(name, s.Name, "https", "TCP", []string{host}, []string{port})
				if !ok {
					fail(path+".passthrough.backend", "%q: use an IP address or a host name", s.Passthrough.Backend)
				}
				m.backends = append(m.backends, b)
				r.to = serviceRef{name, b.port}
			}
			if s.Passthrough.ProxyProtocol != "" {
				fail(path+".passthrough.proxy_protocol", "a PROXY header to a passed-through backend is not rendered (ingress-nginx and Gateway API have no per-route setting for it): remove proxy_protocol for Kubernetes")
			}
		case len(s.Backends) > 0:
			r = &route{allowHTTP: s.AllowHTTP, serverName: s.BackendTLS.ServerName}
			r.https = s.Backends[0].Scheme == "https"
			var hosts, ports []string
			for j, u := range s.Backends {
				if u.Scheme != s.Backends[0].Scheme {
					fail(backendPath(s, path, j), "backends of one service must share a scheme in Kubernetes (%s and %s)", s.Backends[0].Scheme, u.Scheme)
				}
				if u.Hostname() == "" {
					fail(backendPath(s, path, j), "%q has no host: a Service needs an IP address or a host name", u)
				}
				hosts = append(hosts, u.Hostname())
				ports = append(ports, urlPort(u))
			}
			if s.BackendTLS.CAFile != "" {
				fail(path+".backend_tls.ca_file", "verifying the backend against ca_file is not rendered (it would need the CA in the cluster): remove it, or reach the backend over http")
			}
			if s.Kubernetes.Service != "" {
				r.to = serviceRef{s.Kubernetes.Service, atoi32(ports[0])}
				break
			}
			if !claim(path, s.Name) {
				break
			}
			b, ok := hostBackend(s.Name, s.Name, s.Backends[0].Scheme, "TCP", hosts, ports)
			if !ok && !slices.Contains(hosts, "") {
				fail(backendPath(s, path, 1), "a Kubernetes Service reaches IP addresses or one host name (ExternalName), not %s: split the service or use IP addresses", strings.Join(hosts, " and "))
			}
			m.backends = append(m.backends, b)
			r.to = serviceRef{b.name, b.port}
		}
		if r != nil {
			r.name, r.class, r.hosts, r.path = s.Name, s.Expose, s.Hosts, s.Path
			r.dnsTarget = dnsTarget(cfg, s.Expose)
			if r.dnsTarget == "" {
				if s.Expose == config.Public {
					fail(path+".expose", "a public service needs the relay section: its DNS name points at relay.name")
				} else {
					fail(path, "a private service needs gateway.private (or domain): its DNS name points at gateway.private.name")
				}
			}
			if !r.passthrough {
				switch {
				case s.Kubernetes.TLSSecret != "":
					r.tlsSecret = s.Kubernetes.TLSSecret
				case s.Expose == config.Private && m.wildcard != nil && coveredBy(s.Hosts, cfg.Domain):
					r.tlsSecret, r.wildcard = m.wildcard.secret, true
				default:
					r.tlsSecret = s.Name + "-tls"
				}
			}
			m.routes = append(m.routes, r)
		}
		for _, l := range []struct {
			proto  string
			routes []config.L4Route
		}{{"TCP", s.TCP}, {"UDP", s.UDP}} {
			for j, t := range l.routes {
				p := fmt.Sprintf("%s.%s[%d]", path, strings.ToLower(l.proto), j)
				host, port, _ := net.SplitHostPort(t.Backend)
				name := fmt.Sprintf("%s-%s-%d", s.Name, strings.ToLower(l.proto), t.Port)
				if !claim(p, name) {
					continue
				}
				b, ok := hostBackend(name, s.Name, strings.ToLower(l.proto), l.proto, []string{host}, []string{port})
				if !ok {
					fail(p+".backend", "%q: use an IP address or a host name", t.Backend)
					continue
				}
				b.portName = fmt.Sprintf("%s-%d", strings.ToLower(l.proto), t.Port)
				m.backends = append(m.backends, b)
				switch {
				case l.proto == "UDP" && s.Expose == config.Public:
					fail(p, "a public udp port cannot be rendered: the relay starts every datagram with a PROXY header, which neither ingress-nginx nor Gateway API reads over UDP; keep the port private (reached over the VPN) or serve it outside the cluster")
				case l.proto == "UDP" && t.ProxyProtocol != "":
					fail(p+".proxy_protocol", "ingress-nginx sends no PROXY header over UDP: remove proxy_protocol for Kubernetes")
				}
				m.l4 = append(m.l4, &l4Route{service: s.Name, class: s.Expose, protocol: l.proto, port: int32(t.Port),
					to: serviceRef{name, b.port}, proxyProtocol: t.ProxyProtocol != ""})
			}
		}
		if mon := monitorOf(s, m.backends, r, m.namespace); mon != nil {
			m.monitors = append(m.monitors, mon)
		}
	}
	slices.SortFunc(m.routes, func(a, b *route) int { return strings.Compare(a.name, b.name) })
	slices.SortFunc(m.backends, func(a, b *backend) int { return strings.Compare(a.name, b.name) })
	slices.SortFunc(m.monitors, func(a, b *monitor) int { return strings.Compare(a.service, b.service) })
	slices.SortFunc(m.l4, func(a, b *l4Route) int {
		if c := strings.Compare(a.protocol, b.protocol); c != 0 {
			return c
		}
		return int(a.port - b.port)
	})
	return m, errs
}

func backendPath(s *config.Service, path string, j int) string {
	if len(s.Backends) == 1 {
		return path + ".backend"
	}
	return fmt.Sprintf("%s.backends[%d]", path, min(j, len(s.Backends)-1))
}

// hostBackend builds the Service for backends outside the cluster: all IP
// addresses (an EndpointSlice each family), or a single host name
// (ExternalName). ok is false for a mix, several host names, or none.
func hostBackend(name, service, scheme, protocol string, hosts, ports []string) (*backend, bool) {
	b := &backend{name: name, service: service, portName: scheme, protocol: protocol, port: atoi32(ports[0])}
	if scheme == "https" && protocol == "TCP" && service == name {
		b.appProtocol = "https"
	}
	var names []string
	for i, h := range hosts {
		if h == "" {
			return b, false
		}
		if a, err := netip.ParseAddr(h); err == nil {
			b.endpoints = append(b.endpoints, netip.AddrPortFrom(a.Unmap(), uint16(atoi32(ports[i]))))
		} else {
			names = append(names, h)
		}
	}
	switch {
	case len(names) == 0:
		return b, true
	case len(names) == 1 && len(b.endpoints) == 0:
		b.externalName = names[0]
		return b, true
	}
	return b, false
}

func urlPort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}

func atoi32(s string) int32 {
	n, _ := strconv.Atoi(s)
	return int32(n)
}

func dnsTarget(cfg *config.Config, c config.Class) string {
	if c == config.Public {
		if cfg.Relay == nil {
			return ""
		}
		return cfg.Relay.FQDN
	}
	if p := cfg.Gateway.Private; p != nil {
		return p.FQDN
	}
	if cfg.Domain != "" {
		return "private-relay." + cfg.Domain
	}
	return ""
}

// coveredBy reports whether *.domain covers every host.
func coveredBy(hosts []string, domain string) bool {
	for _, h := range hosts {
		label, rest, _ := strings.Cut(h, ".")
		if rest != domain || label == "*" {
			return false
		}
	}
	return len(hosts) > 0
}

func monitorOf(s *config.Service, backends []*backend, r *route, namespace string) *monitor {
	if s.Metrics == "" && s.Health == nil || r == nil || r.passthrough {
		return nil
	}
	mon := &monitor{service: s.Name, metricsPath: s.Metrics, scheme: s.Backends[0].Scheme, health: s.Health, alert: s.Alert}
	var own *backend
	for _, b := range backends {
		if b.name == s.Name && b.service == s.Name {
			own = b
		}
	}
	// Prometheus and the blackbox exporter run in another namespace: a
	// Service of the cluster is reached by its namespaced name.
	targets := make([]string, len(s.Backends))
	for i, u := range s.Backends {
		host := u.Hostname()
		if s.Kubernetes.Service != "" {
			host = s.Kubernetes.Service
			if namespace != "" {
				host += "." + namespace + ".svc"
			}
		}
		targets[i] = net.JoinHostPort(host, urlPort(u))
	}
	targets = slices.Compact(targets)
	if own != nil && own.externalName == "" {
		mon.serviceScrape = own.name
	} else {
		mon.targets = targets
	}
	if s.Health != nil {
		for _, t := range targets {
			mon.probeURLs = append(mon.probeURLs, mon.scheme+"://"+t+s.Health.Path)
		}
	}
	return mon
}

// entryPoints returns the A and AAAA records of the relay (its public IPs)
// and of the private entry point (the addresses of gateway.private.https).
func entryPoints(cfg *config.Config) []dnsRecord {
	var recs []dnsRecord
	add := func(name string, addrs []netip.Addr) {
		var v4, v6 []string
		for _, a := range addrs {
			switch a = a.Unmap(); {
			case !a.IsValid() || a.IsUnspecified():
			case a.Is4():
				v4 = append(v4, a.String())
			default:
				v6 = append(v6, a.String())
			}
		}
		for _, r := range []dnsRecord{{name, "A", v4}, {name, "AAAA", v6}} {
			if slices.Sort(r.targets); len(r.targets) > 0 {
				r.targets = slices.Compact(r.targets)
				recs = append(recs, r)
			}
		}
	}
	if r := cfg.Relay; r != nil && r.FQDN != "" {
		add(r.FQDN, r.PublicIPs)
	}
	if p := cfg.Gateway.Private; p != nil && p.FQDN != "" {
		var addrs []netip.Addr
		for _, hp := range append(append([]string{}, p.HTTPS...), p.HTTP...) {
			if ap, err := netip.ParseAddrPort(hp); err == nil {
				addrs = append(addrs, ap.Addr())
			}
		}
		add(p.FQDN, addrs)
	}
	return recs
}
