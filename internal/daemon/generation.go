package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labgate/labgate/internal/certs"
	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/dns"
	"github.com/labgate/labgate/internal/gateway"
	"github.com/labgate/labgate/internal/gateway/l4"
	"github.com/labgate/labgate/internal/health"
	"github.com/labgate/labgate/internal/listen"
	"github.com/labgate/labgate/internal/proxyproto"
	"github.com/labgate/labgate/internal/tlspeek"
)

// generation is everything that serves one config.
type generation struct {
	cfg     *config.Config
	gw      *gateway.Gateway
	l4      *l4.Router
	servers []*server
	raw     []*rawListener // layer-4 listeners
	log     *slog.Logger
	acme    *acmeState   // nil: certificates from the internal CA
	certs   certs.Source // what the TLS listeners serve; nil without any
	cancel  context.CancelFunc
	done    chan struct{}
}

// rawListener hands accepted connections to the layer-4 router.
type rawListener struct {
	addr   string
	ln     *listen.Listener
	handle func(net.Conn)
}

// server is one http.Server behind one bound listener.
type server struct {
	addr   string // as written in the config
	ln     *listen.Listener
	policy *listen.Policy
	pipe   *listen.Pipe
	srv    *http.Server
	tls    bool
	class  *config.Class // nil for the admin listener
	// passthrough, on an HTTPS listener whose class reaches TLS
	// passthrough services, is the listener as the l4 router knows it:
	// each connection's ClientHello is read first, to route by SNI.
	passthrough *l4.Listener
}

// Check builds what serve would build from cfg, without binding, starting
// or writing anything: the dry run behind `labgate check`.
func Check(cfg *config.Config) error {
	if err := precheck(cfg); err != nil {
		return err
	}
	if err := l4.Check(cfg); err != nil {
		return err
	}
	gw, err := gateway.New(cfg, gateway.Options{HTTPSPort: httpsPorts(cfg)})
	if err != nil {
		return err
	}
	gw.Close()
	return nil
}

// precheck holds the checks that nothing build constructs makes by itself
// (l4.New and gateway.New check the rest): build and Check both run it, so
// serve refuses exactly what `labgate check` refuses, on start and on every
// reload, from a file or from git.
func precheck(cfg *config.Config) error {
	if err := checkACME(cfg); err != nil {
		return err
	}
	if err := dns.Check(cfg); err != nil {
		return err
	}
	if _, err := health.Targets(cfg, health.Env{}); err != nil {
		return err
	}
	return nil
}

func (d *Daemon) build(cfg *config.Config) (*generation, error) {
	if err := precheck(cfg); err != nil {
		return nil, err
	}
	warnRelayInPrivateAllow(d.log, cfg)
	var source certs.Source // set below for ACME, once the listeners are bound
	if needsTLS(cfg) && cfg.TLS.ACME == nil {
		source = d.caSource(cfg) // statefiles.go: a damaged CA serves no HTTPS, the rest serves
	}

	router, err := l4.New(cfg, l4.Options{Log: d.log, Metrics: d.l4m, IdleTimeout: l4IdleTimeout(cfg)})
	if err != nil {
		return nil, err
	}
	gwOpts := gateway.Options{
		Log:       d.log,
		Access:    d.accessLogger(cfg),
		Metrics:   d.gwm,
		HTTPSPort: httpsPorts(cfg),
		Observe:   d.observe(),
	}
	d.balanceOptions(cfg, &gwOpts)
	gw, err := gateway.New(cfg, gwOpts)
	if err != nil {
		router.Close()
		return nil, err
	}
	g := &generation{cfg: cfg, gw: gw, l4: router, log: d.log, done: make(chan struct{})}
	lim := cfg.Gateway.Limits
	add := func(addr string, class config.Class, useTLS, redirect bool, policy *listen.Policy) error {
		ln, err := d.registry.Listen(addr)
		if err != nil {
			return fmt.Errorf("listening on %s: %w", addr, err)
		}
		h := gw.Handler(class)
		if redirect {
			h = gw.HTTPHandler(class)
		}
		if host := statusHost(cfg); host != "" {
			h = d.status.wrap(host, h, redirect, httpsPorts(cfg)[class])
		}
		if redirect {
			h = acmeHTTP(g, h) // outermost: HTTP-01 challenges for every managed name, the status host's too
		}
		s := &server{addr: addr, ln: ln, policy: policy, pipe: listen.NewPipe(ln.Addr()), tls: useTLS, class: &class}
		s.srv = &http.Server{
			Handler:           h,
			ReadHeaderTimeout: lim.ReadHeaderTimeout,
			IdleTimeout:       lim.IdleTimeout,
			MaxHeaderBytes:    lim.MaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelDebug),
		}
		if useTLS {
			// source is set once the listeners are bound (ACME): read it at
			// the handshake.
			getCert := func(h *tls.ClientHelloInfo) (*tls.Certificate, error) { return source.GetCertificate(h) }
			if class == config.Public {
				getCert = publicCertificates(gw, statusHost(cfg), getCert)
			}
			s.srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: getCert}
			if cfg.TLS.ACME != nil {
				s.srv.TLSConfig.NextProtos = []string{"h2", "http/1.1", certs.ACMETLS1}
			}
			if router.HasPassthrough(class) {
				port := 0
				if _, p, err := net.SplitHostPort(addr); err == nil {
					port, _ = strconv.Atoi(p)
				}
				s.passthrough = &l4.Listener{Class: class, Proto: "tcp", Addr: addr, Port: port}
			}
		}
		g.servers = append(g.servers, s)
		return nil
	}
	var errs []error
	var pubPolicy, privPolicy *listen.Policy
	if p := cfg.Gateway.Public; p != nil {
		policy := &listen.Policy{Allow: p.TrustedRelays, RequireProxy: true, HeaderTimeout: lim.ProxyHeaderTimeout, Log: d.log,
			OnRefuse: d.metrics.refusedBy(config.Public)}
		pubPolicy = policy
		for _, a := range p.HTTPS {
			errs = append(errs, add(a, config.Public, true, false, policy))
		}
		for _, a := range p.HTTP {
			errs = append(errs, add(a, config.Public, false, true, policy))
		}
	}
	if p := cfg.Gateway.Private; p != nil {
		policy := &listen.Policy{Allow: p.Allow, Log: d.log, OnRefuse: d.metrics.refusedBy(config.Private)}
		privPolicy = policy
		for _, a := range p.HTTPS {
			errs = append(errs, add(a, config.Private, true, false, policy))
		}
		for _, a := range p.HTTP {
			errs = append(errs, add(a, config.Private, false, true, policy))
		}
	}
	if cfg.Gateway.Admin != "" {
		ln, err := d.registry.Listen(cfg.Gateway.Admin)
		if err != nil {
			errs = append(errs, fmt.Errorf("listening on %s (gateway.admin): %w", cfg.Gateway.Admin, err))
		} else {
			g.servers = append(g.servers, &server{addr: cfg.Gateway.Admin, ln: ln, pipe: listen.NewPipe(ln.Addr()), srv: &http.Server{
				Handler:           d.adminHandler(),
				ReadHeaderTimeout: lim.ReadHeaderTimeout,
				IdleTimeout:       lim.IdleTimeout,
				ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelDebug),
			}})
		}
	}
	errs = append(errs, d.addL4(g, pubPolicy, privPolicy)...)
	if err := errors.Join(errs...); err == nil && cfg.TLS.ACME != nil && needsTLS(cfg) {
		source, err = d.acmeSource(g)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		releaseACME(g, d.cur)
		gw.Close()
		router.Close()
		return nil, err
	}
	g.certs = source
	return g, nil
}

// addL4 binds the layer-4 listeners. A public and a private tcp port on the
// same address share one socket: the source decides the class, a trusted
// relay's connection is public (and must start with a PROXY header).
//
// UDP sockets are not in d.registry (it is TCP-only) and not in g.addrs():
// the router serves them from a set of sockets that each generation's
// router hands to the next, so a reload reuses them, a failed build (which
// closes its router) releases only what it bound, and a socket is closed
// once no generation configures it and its last flow has idled out.
func (d *Daemon) addL4(g *generation, pub, priv *listen.Policy) []error {
	byAddr := map[string][]l4.Listener{}
	var order []string
	listeners := l4.Listeners(g.cfg)
	for _, l := range listeners {
		if l.Proto != "tcp" {
			continue
		}
		if _, seen := byAddr[l.Addr]; !seen {
			order = append(order, l.Addr)
		}
		byAddr[l.Addr] = append(byAddr[l.Addr], l)
	}
	var errs []error
	for _, addr := range order {
		ln, err := d.registry.Listen(addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("listening on %s (tcp service port): %w", addr, err))
			continue
		}
		var pubL, privL *l4.Listener
		for _, l := range byAddr[addr] {
			if l.Class == config.Public {
				pubL = &l
			} else {
				privL = &l
			}
		}
		router := g.l4
		g.raw = append(g.raw, &rawListener{addr: addr, ln: ln, handle: func(c net.Conn) {
			l, policy := privL, priv
			if pubL != nil && (privL == nil || pub.Allowed(proxyproto.AddrPortOf(c.RemoteAddr()).Addr())) {
				l, policy = pubL, pub
			}
			if l == nil || policy == nil {
				c.Close()
				return
			}
			if c = policy.Admit(c); c != nil {
				go router.Handle(*l, c)
			}
		}})
	}
	if err := g.l4.ServeUDP(d.udpSockets(), listeners); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// udpSockets returns the UDP sockets of the running generation, for the
// next one to reuse, or a new set for the first. d.mu is held (apply).
func (d *Daemon) udpSockets() *l4.UDPSockets {
	if d.cur != nil {
		if s := d.cur.l4.UDPSockets(); s != nil {
			return s
		}
	}
	return l4.NewUDPSockets()
}

// l4IdleTimeout follows the relay's idle timeout when the file has a relay
// section, so both ends of a forwarded connection give up together.
func l4IdleTimeout(cfg *config.Config) time.Duration {
	if cfg.Relay != nil {
		return cfg.Relay.IdleTimeout
	}
	return 0
}

// attach starts the generation's servers and points every listener at them.
func (g *generation) attach() {
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go func() {
		defer close(g.done)
		_ = g.gw.Run(ctx)
	}()
	for _, s := range g.servers {
		go func() {
			var err error
			if s.tls {
				err = s.srv.ServeTLS(s.pipe, "", "")
			} else {
				err = s.srv.Serve(s.pipe)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				g.log.Error("server stopped", "addr", s.addr, "error", err)
			}
		}()
		policy, pipe := s.policy, s.pipe
		if pt := s.passthrough; pt != nil {
			router, timeout := g.l4, g.cfg.Gateway.Limits.ReadHeaderTimeout
			s.ln.SetHandler(func(c net.Conn) {
				if policy != nil {
					if c = policy.Admit(c); c == nil {
						return
					}
				}
				go passthroughOrDeliver(router, *pt, timeout, c, pipe)
			})
			continue
		}
		s.ln.SetHandler(func(c net.Conn) {
			if policy != nil {
				if c = policy.Admit(c); c == nil {
					return
				}
			}
			if !pipe.Deliver(c) {
				c.Close()
			}
		})
	}
	for _, r := range g.raw {
		r.ln.SetHandler(r.handle)
	}
}

// passthroughOrDeliver reads the ClientHello of c, admitted on the HTTPS
// listener l, for up to timeout: a server name of a passthrough service goes
// to the l4 router, raw; anything else (other names, no SNI, not TLS, too
// slow) goes to the HTTP server with the bytes read replayed, as if nothing
// had been read.
func passthroughOrDeliver(router *l4.Router, l l4.Listener, timeout time.Duration, c net.Conn, pipe *listen.Pipe) {
	hello, rc, err := tlspeek.Peek(c, timeout)
	if err == nil && router.HandleTLS(l, c, hello.ServerName, rc.(*tlspeek.Conn).Peeked()) {
		return
	}
	if !pipe.Deliver(rc) {
		rc.Close()
	}
}

// drain lets requests in flight finish for up to grace, then closes the rest.
// Hijacked connections (websockets) are not tracked by http.Server and live
// on, and so do layer-4 connections unless the daemon is stopping.
func (g *generation) drain(grace time.Duration, stopping bool) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var wg sync.WaitGroup
	if stopping {
		wg.Go(func() { _ = g.l4.Shutdown(ctx) })
	} else {
		g.l4.Close()
	}
	for _, s := range g.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.srv.Shutdown(ctx); err != nil {
				s.srv.Close()
			}
		}()
	}
	wg.Wait()
	g.cancel()
	<-g.done
	g.gw.Close()
}

func (g *generation) addrs() []string {
	var out []string
	for _, s := range g.servers {
		out = append(out, s.addr)
	}
	for _, r := range g.raw {
		out = append(out, r.addr)
	}
	return out
}

func (d *Daemon) ca(stateDir string) (*certs.CA, error) {
	dir := filepath.Join(stateDir, "ca")
	if ca, ok := d.cas[dir]; ok {
		return ca, nil
	}
	ca, err := certs.OpenCA(dir, time.Now)
	if err != nil {
		return nil, fmt.Errorf("internal CA: %w", err)
	}
	d.log.Info("certificates come from labgate's internal CA", "root", ca.RootPath(), "hint", ca.TrustHint())
	d.cas[dir] = ca
	return ca, nil
}

func needsTLS(cfg *config.Config) bool {
	return cfg.Gateway.Public != nil && len(cfg.Gateway.Public.HTTPS) > 0 ||
		cfg.Gateway.Private != nil && len(cfg.Gateway.Private.HTTPS) > 0
}

// certNames are the names TLS listeners answer for: every service host but
// those of TLS passthrough services, and
// the domain's wildcard when private services share one certificate.
func certNames(cfg *config.Config) []string {
	var names []string
	seen := map[string]bool{}
	for _, s := range cfg.Services {
		if s.Passthrough != nil {
			continue // the backend holds the certificate
		}
		for _, h := range s.Hosts {
			if cfg.TLS.PrivateWildcard && s.Expose == config.Private && cfg.Domain != "" && isChildOf(h, cfg.Domain) {
				h = "*." + cfg.Domain
			}
			if !seen[h] {
				seen[h] = true
				names = append(names, h)
			}
		}
	}
	if host := statusHost(cfg); host != "" && !seen[host] {
		names = append(names, host)
	}
	return names
}

// isChildOf reports whether h is exactly one label below domain.
func isChildOf(h, domain string) bool {
	label, ok := strings.CutSuffix(h, "."+domain)
	return ok && label != "" && !strings.Contains(label, ".")
}

// httpsPorts says which port http->https redirects name per class. Public
// clients come through the relay, which serves HTTPS on 443.
func httpsPorts(cfg *config.Config) map[config.Class]int {
	ports := map[config.Class]int{config.Public: 443, config.Private: 443}
	if p := cfg.Gateway.Private; p != nil && len(p.HTTPS) > 0 {
		if _, port, err := net.SplitHostPort(p.HTTPS[0]); err == nil {
			if n, err := strconv.Atoi(port); err == nil {
				ports[config.Private] = n
			}
		}
	}
	return ports
}

// publicCertificates is get for a public listener, except that it has no
// certificate for a name no public service answers: a stranger probing the
// relay with private names (or the private wildcard's) gets the handshake
// failure an unknown name gets, not a certificate that says the name
// exists. TLS-ALPN-01 challenges go to get whatever their name.
func publicCertificates(gw *gateway.Gateway, statusHost string, get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		name := strings.ToLower(strings.TrimSuffix(h.ServerName, "."))
		if name != "" && name != statusHost && !gw.Serves(config.Public, name) && !slices.Contains(h.SupportedProtos, certs.ACMETLS1) {
			return nil, fmt.Errorf("no certificate for %q on a public listener", h.ServerName)
		}
		return get(h)
	}
}
