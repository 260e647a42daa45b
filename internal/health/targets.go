package health

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/labgate/labgate/internal/config"
)

// Env is what checks need besides the config.
type Env struct {
	// Resolver resolves public names for outside and dns checks; nil: one
	// that asks dns.resolvers, or the system's when there are none.
	Resolver *net.Resolver
	// OutsideDial connects outside checks: "host:port" of the public path.
	// nil: resolve the host with Resolver and dial what it resolves to.
	OutsideDial DialFunc
	// OutsideTLS verifies certificates on the public path; nil: the system's roots.
	OutsideTLS *tls.Config
	// Now is the clock for certificate days; nil: time.Now.
	Now func() time.Time
	// OnBackend, if set, is told the outcome of every round of each
	// service's BalancingCheck, backend by backend (backend is
	// scheme://host:port as in the gateway's metrics): err is nil when the
	// backend passed, also with a warning (slow, certificate days left).
	// The gateway's rotation follows it instead of probing the backends
	// itself. Those checks also run at once when they start, not at a
	// random point of their first interval.
	OnBackend func(service, backend string, err error)
}

// Resolver returns a resolver that asks the given servers (host:port), or
// nil (the system's) when there are none.
func Resolver(servers []string) *net.Resolver {
	if len(servers) == 0 {
		return nil
	}
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var errs []error
		d := net.Dialer{}
		for _, s := range servers {
			c, err := d.DialContext(ctx, network, s)
			if err == nil {
				return c, nil
			}
			errs = append(errs, err)
		}
		return nil, errors.Join(errs...)
	}}
}

// Targets are the checks cfg asks for: each service's checks from inside
// and, for public services with outside checks, from outside, plus the
// relay path's own check when any service is checked from outside.
func Targets(cfg *config.Config, env Env) ([]Target, error) {
	if env.Resolver == nil {
		env.Resolver = Resolver(cfg.DNS.Resolvers)
	}
	if env.OutsideDial == nil {
		d := &net.Dialer{Resolver: env.Resolver}
		env.OutsideDial = d.DialContext
	}
	var out []Target
	var errs []error
	relay := Target{Service: "", Check: RelayCheck, Scope: Outside}
	for _, s := range cfg.Services {
		h := s.Health
		if h == nil {
			continue
		}
		base := Target{Service: s.Name, Interval: h.Interval, Timeout: h.Timeout, Failures: h.Failures, Successes: h.Successes}
		balancing := BalancingCheck(s)
		for _, ch := range h.Checks {
			feeds := ch.Name == balancing && env.OnBackend != nil
			// What the checkers are built from: equal specs run the same check.
			base.Spec = []any{ch, s.Hosts, s.Backends, s.BackendTLS, s.TCP, s.Expose, h.Outside, cfg.Relay, cfg.DNS.Resolvers, cfg.Gateway.Private, feeds}
			in, inErr := insideChecker(cfg, s, ch, env)
			if inErr != nil {
				errs = append(errs, fmt.Errorf("service %s, check %s: %w", s.Name, ch.Name, inErr))
			}
			if in != nil {
				t := base
				t.Check, t.Scope, t.Checker = ch.Name, Inside, in
				if hc, ok := in.(*HTTPCheck); ok && feeds {
					hc.Observe = backendObserver(s, hc, env.OnBackend)
					t.Prompt = true
				}
				if ch.Type == "dns" {
					t.Scope = Outside
				}
				out = append(out, t)
			}
			if !h.Outside || ch.Type == "dns" {
				continue
			}
			if oc := outsideChecker(cfg, s, ch, env); oc != nil {
				t := base
				t.Check, t.Scope, t.Checker = ch.Name, Outside, oc
				out = append(out, t)
				if relay.Interval == 0 || h.Interval < relay.Interval {
					relay.Interval, relay.Timeout = h.Interval, h.Timeout
				}
				if relay.Failures == 0 || h.Failures < relay.Failures {
					relay.Failures, relay.Successes = h.Failures, h.Successes
				}
			}
		}
	}
	if relay.Interval > 0 && cfg.Relay != nil {
		relay.Checker = relayChecker(cfg, env)
		relay.Spec = []any{cfg.Relay, cfg.DNS.Resolvers, publicHosts(cfg)}
		out = append(out, relay)
	}
	return out, errors.Join(errs...)
}

// MaxLatency is, for each service whose checks bound latency, the smallest
// max_latency: the mean latency of its real requests is held to it too.
func MaxLatency(cfg *config.Config) map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, s := range cfg.Services {
		if s.Health == nil {
			continue
		}
		for _, ch := range s.Health.Checks {
			if ch.MaxLatency > 0 && (out[s.Name] == 0 || ch.MaxLatency < out[s.Name]) {
				out[s.Name] = ch.MaxLatency
			}
		}
	}
	return out
}

// ServiceNames are the names of cfg's services, in order.
func ServiceNames(cfg *config.Config) []string {
	var out []string
	for _, s := range cfg.Services {
		out = append(out, s.Name)
	}
	return out
}

// checkHost is the host a service is checked as: its first name without a
// wildcard ("" when it has none).
func checkHost(s *config.Service) string {
	for _, h := range s.Hosts {
		if !strings.HasPrefix(h, "*.") {
			return h
		}
	}
	return ""
}

func insideChecker(cfg *config.Config, s *config.Service, ch config.Check, env Env) (Checker, error) {
	switch ch.Type {
	case "http":
		if len(s.Backends) == 0 {
			return nil, nil // nothing behind the gateway: only outside checks apply
		}
		tlsConf, err := s.BackendTLS.ClientConfig()
		if err != nil {
			return nil, err
		}
		c := httpChecker(ch, env)
		c.Host, c.TLS = checkHost(s), tlsConf
		for _, b := range s.Backends {
			u := *b
			u.Path = ch.Path
			c.URLs = append(c.URLs, &u)
		}
		return c, nil
	case "tcp":
		return &TCPCheck{Addr: config.CheckAddress(ch, s), MaxLatency: ch.MaxLatency}, nil
	case "tls":
		addr, name := config.CheckAddress(ch, s), checkHost(s)
		if addr != "" && s.BackendTLS.ServerName != "" {
			name = s.BackendTLS.ServerName
		}
		if addr == "" {
			// The certificate labgate serves: ask the private HTTPS listener.
			if p := cfg.Gateway.Private; p != nil && len(p.HTTPS) > 0 {
				addr = dialable(p.HTTPS[0])
			} else {
				return nil, nil
			}
		}
		return &TLSCheck{Addr: addr, ServerName: name, MinDaysLeft: ch.MinDaysLeft, MaxLatency: ch.MaxLatency, Now: env.Now}, nil
	case "dns":
		expect := ch.Expect
		if len(expect) == 0 && s.Expose == config.Public && cfg.Relay != nil {
			expect = cfg.Relay.PublicIPs
		}
		return &DNSCheck{Host: ch.Host, Expect: expect, Resolver: env.Resolver}, nil
	}
	return nil, fmt.Errorf("unknown check type %q", ch.Type)
}

// outsideChecker is ch as a stranger runs it, through the public path; nil
// when ch has no outside form.
func outsideChecker(cfg *config.Config, s *config.Service, ch config.Check, env Env) Checker {
	host := checkHost(s)
	switch ch.Type {
	case "http":
		if host == "" {
			return nil
		}
		c := httpChecker(ch, env)
		c.URLs = []*url.URL{{Scheme: "https", Host: host, Path: ch.Path}}
		c.Host, c.TLS, c.Dial = host, env.OutsideTLS, env.OutsideDial
		return c
	case "tls":
		if host == "" || ch.Address != "" {
			return nil
		}
		return &TLSCheck{Addr: net.JoinHostPort(host, "443"), ServerName: host, Dial: env.OutsideDial,
			MinDaysLeft: ch.MinDaysLeft, MaxLatency: ch.MaxLatency, Now: env.Now}
	case "tcp":
		addr := config.CheckAddress(ch, s)
		for _, r := range s.TCP {
			if r.Backend == addr {
				name := host
				if name == "" && cfg.Relay != nil {
					name = cfg.Relay.FQDN
				}
				if name == "" {
					return nil
				}
				return &TCPCheck{Addr: net.JoinHostPort(name, strconv.Itoa(r.Port)), Dial: env.OutsideDial, MaxLatency: ch.MaxLatency}
			}
		}
	}
	return nil
}

// backendObserver turns the outcomes of c, an inside http check of s, into
// calls of on with each backend's name: warnings pass.
func backendObserver(s *config.Service, c *HTTPCheck, on func(service, backend string, err error)) func(*url.URL, error) {
	names := make(map[*url.URL]string, len(c.URLs))
	for _, u := range c.URLs {
		names[u] = u.Scheme + "://" + u.Host
	}
	return func(u *url.URL, err error) {
		if _, ok := err.(*Warning); ok {
			err = nil
		}
		on(s.Name, names[u], err)
	}
}

func httpChecker(ch config.Check, env Env) *HTTPCheck {
	return &HTTPCheck{Status: ch.Status, Body: ch.Body, JSONField: ch.JSONField, JSONEquals: ch.JSONEquals,
		MaxLatency: ch.MaxLatency, MinDaysLeft: ch.MinDaysLeft, Now: env.Now}
}

// relayChecker checks the relay path: a TLS handshake with the gateway's
// public listener, through each of the relay's public addresses on 443, for
// the first public service's name. It passes when one address works.
func relayChecker(cfg *config.Config, env Env) Checker {
	name := ""
	for _, s := range cfg.Services {
		if s.Expose == config.Public && s.Passthrough == nil {
			if name = checkHost(s); name != "" {
				break
			}
		}
	}
	var targets []string
	for _, ip := range cfg.Relay.PublicIPs {
		targets = append(targets, netip.AddrPortFrom(ip, 443).String())
	}
	if len(targets) == 0 {
		targets = []string{net.JoinHostPort(cfg.Relay.FQDN, "443")}
	}
	var cs anyOf
	for _, t := range targets {
		if name == "" {
			cs = append(cs, &TCPCheck{Addr: t, Dial: env.OutsideDial})
		} else {
			cs = append(cs, &TLSCheck{Addr: t, ServerName: name, Dial: env.OutsideDial, Now: env.Now})
		}
	}
	return cs
}

func publicHosts(cfg *config.Config) []string {
	var out []string
	for _, s := range cfg.Services {
		if s.Expose == config.Public {
			out = append(out, s.Hosts...)
		}
	}
	return out
}

// anyOf passes when one of its checkers passes.
type anyOf []Checker

func (a anyOf) Check(ctx context.Context) error {
	var errs []error
	for _, c := range a {
		err := c.Check(ctx)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// dialable turns a listen address into one to connect to: an unspecified
// host becomes loopback.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip, err := netip.ParseAddr(host); host == "" || err == nil && ip.IsUnspecified() {
		if err == nil && ip.Is6() {
			return net.JoinHostPort("::1", port)
		}
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}
