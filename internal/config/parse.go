package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Options change how a file is read. The zero value reads the process environment.
type Options struct {
	// Getenv resolves ${VAR}; nil uses os.LookupEnv.
	Getenv func(string) (string, bool)
	// Bootstrap, when set, is the local file of a git-followed setup and the
	// file parsed is the one fetched from git: it takes its state_dir and git
	// from Bootstrap and may only repeat them unchanged.
	Bootstrap *Config
	// ReadSecret reads the file of a *_file secret; nil uses os.ReadFile.
	// (It may decrypt: see internal/sops.)
	ReadSecret func(name string) ([]byte, error)
	// UnreadSecrets takes every secret field as set without resolving its
	// ${VAR} or reading its *_file: for `labgate render`, which never uses a
	// secret's value and runs where the secrets are not (an Argo CD plugin).
	UnreadSecrets bool
	// Name, when set, is how errors name the file and the files beside it
	// (default: the name Parse reads): a revision fetched from git is read
	// from a copy in state_dir, and errors name it as it is in the
	// repository (homelab/lab.yaml:17:13).
	Name string
}

// unreadSecret is the value of a secret that Options.UnreadSecrets left unread.
const unreadSecret = "unread"

// Load reads and parses the file at path.
func Load(path string, opts Options) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data, opts)
}

// Parse parses data read from name (used in errors; relative paths in the file
// are taken from its directory). On failure the error is an Errors listing
// every problem found, in file order.
func Parse(name string, data []byte, opts Options) (*Config, error) {
	if opts.Getenv == nil {
		opts.Getenv = os.LookupEnv
	}
	if opts.ReadSecret == nil {
		opts.ReadSecret = os.ReadFile
	}
	shown := name
	if opts.Name != "" {
		shown = opts.Name
	}
	d := &decoder{
		file:       shown,
		dir:        filepath.Dir(name),
		getenv:     opts.Getenv,
		pos:        map[string]position{},
		secrets:    map[string]bool{},
		readSecret: opts.ReadSecret,

		unreadSecrets: opts.UnreadSecrets,
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{File: shown, Msg: "the file is empty (start with `version: 1`)"}}
		}
		e := yamlError(shown, err)
		if e.Line > 0 {
			// The error points at the line where a flow collection starts or
			// at the one after: look around it for a ${VAR}.
			lines := strings.Split(string(data), "\n")
			near := strings.Join(lines[min(max(e.Line-2, 0), len(lines)):min(e.Line+2, len(lines))], "\n")
			if strings.Contains(near, "${") {
				e.Msg += ` (inside { } or [ ], quote "${VAR}" references)`
			}
		}
		return nil, Errors{e}
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, Errors{{File: shown, Line: extra.Line, Col: extra.Column, Msg: "only one YAML document is allowed (remove the ---)"}}
	case !errors.Is(err, io.EOF):
		// A broken second document is still a broken file.
		return nil, Errors{yamlError(shown, err)}
	}
	var f file
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if isNull(root) {
		return nil, Errors{{File: shown, Msg: "the file is empty (start with `version: 1`)"}}
	}
	d.decode(root, reflect.ValueOf(&f).Elem(), "")
	if root.Kind != yaml.MappingNode {
		return nil, d.errs // nothing was decoded: building would only add noise
	}
	b := &builder{decoder: d, decoded: len(d.errs), abs: func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(d.dir, p)
	}}
	cfg := b.build(&f)
	cfg.Path = name
	cfg.shown = shown
	cfg.positions = d.pos
	b.git(cfg, f.Git, opts.Bootstrap)
	if len(d.errs) > 0 {
		d.errs.sort()
		return nil, d.errs
	}
	return cfg, nil
}

func yamlError(name string, err error) Error {
	// yaml.v3 says "yaml: line 3: mapping values are not allowed in this context".
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	e := Error{File: name, Msg: msg}
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ": "); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				line, e.Msg = n, rest[i+2:]
			}
		}
	}
	if yamlParserProblems[e.Msg] {
		// yaml.v3 counts lines from 0 in parser errors (and omits line 0),
		// from 1 in scanner errors.
		line++
	}
	if line > 0 {
		e.Line, e.Col = line, 1
	}
	return e
}

// yamlParserProblems are the messages of yaml.v3's parser (parserc.go), as
// opposed to its scanner.
var yamlParserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// builder turns the decoded file shapes into a *Config, reporting problems
// at the position of the value they concern.
type builder struct {
	*decoder
	decoded int // errors found while decoding: errs[:decoded]
	abs     func(string) string
}

func (b *builder) fail(path, format string, args ...any) {
	// A value the decoder already refused was left zero: say nothing more about it.
	for _, e := range b.errs[:b.decoded] {
		if e.Path == "" || path == e.Path || strings.HasPrefix(path, e.Path+".") || strings.HasPrefix(path, e.Path+"[") {
			return
		}
	}
	// Report at the value's position, or at the closest enclosing one.
	c := Config{shown: b.file, positions: b.pos}
	b.errs = append(b.errs, c.Errorf(path, format, args...))
}

func parent(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

func (b *builder) build(f *file) *Config {
	c := &Config{Version: f.Version, StateDir: b.abs(f.StateDir)}
	if f.Version != 1 && b.pos["version"] != (position{}) {
		b.fail("version", "unsupported version %d (this labgate reads version 1)", f.Version)
	}
	if f.Domain != "" {
		if d, ok := hostname(f.Domain); ok && !strings.HasPrefix(d, "*") {
			c.Domain = d
		} else {
			b.fail("domain", "%q is not a DNS name", f.Domain)
		}
	}
	c.Log = Log{Format: f.Log.Format, Level: f.Log.Level, Access: f.Log.Access}
	c.TLS = b.tls(f.TLS)
	c.DNS = b.dns(f.DNS)
	c.Relay = b.relay(f.Relay, c.Domain)
	c.Gateway = b.gateway(f.Gateway, c.Domain)
	b.relayTarget(c)
	c.Alerts = b.alerts(f.Alerts)
	c.Services = b.services(f.Services, c)
	b.kubernetes(f, c)
	c.Alerting = b.alerting(f.Alerting, c)
	b.speedtestClash(c)
	b.dnsZone(f.DNS, c)
	c.Status = b.status(f.Status, c)
	return c
}

func (b *builder) tls(f fileTLS) TLS {
	t := TLS{PrivateWildcard: f.PrivateWildcard}
	if a := f.ACME; a != nil {
		acme := &ACME{Email: a.Email}
		if !strings.Contains(a.Email, "@") {
			b.fail("tls.acme.email", "%q is not an email address", a.Email)
		}
		switch a.CA {
		case "letsencrypt":
			acme.Directory = "https://acme-v02.api.letsencrypt.org/directory"
		case "letsencrypt-staging":
			acme.Directory = "https://acme-staging-v02.api.letsencrypt.org/directory"
		default:
			if u, err := url.Parse(a.CA); err != nil || u.Scheme != "https" || u.Host == "" {
				b.fail("tls.acme.ca", "%q is not letsencrypt, letsencrypt-staging or an https:// directory URL", a.CA)
			}
			acme.Directory = a.CA
		}
		for i, r := range a.CARoots {
			acme.CARoots = append(acme.CARoots, b.existingFile(fmt.Sprintf("tls.acme.ca_roots[%d]", i), r))
		}
		t.ACME = acme
	}
	return t
}

func (b *builder) existingFile(path, name string) string {
	p := b.abs(name)
	if _, err := os.Stat(p); err != nil {
		b.fail(path, "%v", b.pathError(err))
	}
	return p
}

func (b *builder) dns(f fileDNS) DNS {
	d := b.dnsOptions(f)
	if p := f.Provider; p != nil && p.Type != "none" {
		prov := &DNSProvider{Type: p.Type, APIToken: NewSecret(p.APIToken), Server: p.Server,
			TSIGName: p.TSIGName, TSIGAlgorithm: p.TSIGAlgorithm, TSIGSecret: NewSecret(p.TSIGSecret), Proxied: p.Proxied}
		switch p.Type {
		case "cloudflare":
			if p.APIToken == "" {
				b.fail("dns.provider.api_token", "cloudflare needs api_token (or api_token_file)")
			}
		case "rfc2136":
			if p.Server == "" {
				b.fail("dns.provider", "rfc2136 needs server (host:port of the primary)")
			} else {
				b.hostPort("dns.provider.server", p.Server)
			}
			if p.TSIGName == "" {
				b.fail("dns.provider.tsig_name", "rfc2136 needs tsig_name (the name of the TSIG key)")
			}
			if p.TSIGSecret == "" {
				b.fail("dns.provider.tsig_secret", "rfc2136 needs tsig_secret (or tsig_secret_file)")
			}
		}
		d.Provider = prov
	}
	for i, r := range f.Resolvers {
		d.Resolvers = append(d.Resolvers, b.hostPort(fmt.Sprintf("dns.resolvers[%d]", i), r))
	}
	if s := f.Serve; s != nil {
		serve := &DNSServe{}
		for i, l := range s.Listen {
			serve.Listen = append(serve.Listen, b.hostPort(fmt.Sprintf("dns.serve.listen[%d]", i), l))
		}
		d.Serve = serve
	}
	return d
}

func (b *builder) relay(f *fileRelay, domain string) *Relay {
	if f == nil {
		return nil
	}
	r := &Relay{Name: f.Name, FQDN: b.qualify("relay.name", f.Name, domain)}
	for i, s := range f.PublicIPs {
		if a, err := netip.ParseAddr(s); err == nil {
			r.PublicIPs = append(r.PublicIPs, a)
		} else {
			b.fail(fmt.Sprintf("relay.public_ips[%d]", i), "%q is not an IP address", s)
		}
	}
	r.Listen = b.addr("relay.listen", f.Listen)
	r.Gateway = b.addr("relay.gateway", f.Gateway)
	if f.Admin != "" && f.Admin != "off" {
		r.Admin = b.hostPort("relay.admin", f.Admin)
	}
	r.ConnectTimeout = time.Duration(f.ConnectTimeout)
	r.IdleTimeout = time.Duration(f.IdleTimeout)
	r.UDPFlowTimeout = time.Duration(f.UDPFlowTimeout)
	r.MaxConnsPerSource = f.MaxConnsPerSource
	for _, d := range []struct {
		path string
		v    time.Duration
	}{{"relay.connect_timeout", r.ConnectTimeout}, {"relay.idle_timeout", r.IdleTimeout}, {"relay.udp_flow_timeout", r.UDPFlowTimeout}} {
		if d.v <= 0 {
			b.fail(d.path, "must be more than 0")
		}
	}
	if r.MaxConnsPerSource < 1 {
		b.fail("relay.max_conns_per_source", "at least 1")
	}
	r.Speedtest = b.speedtest(f.Speedtest)
	return r
}

// The bounds of relay.speedtest.budget: the relay sends or takes at most
// 64 MiB per request.
const (
	minSpeedtestBudget = 64 << 10
	maxSpeedtestBudget = 128 << 20
)

func (b *builder) speedtest(f *fileSpeedtest) *Speedtest {
	if f == nil {
		return nil
	}
	s := &Speedtest{Interval: time.Duration(f.Interval), Budget: f.Budget, Samples: f.Samples}
	if f.Listen != "" {
		ap, err := netip.ParseAddrPort(f.Listen)
		switch {
		case err != nil:
			b.fail("relay.speedtest.listen", "%q is not ip:port on the relay's VPN address (for IPv6 write [fd7a::1]:9182)", f.Listen)
		case ap.Addr().IsUnspecified() || ap.Port() == 0:
			b.fail("relay.speedtest.listen", "%q: the gateway connects here, so write the relay's VPN address and a port", f.Listen)
		default:
			s.Listen = ap
		}
	}
	if s.Interval < time.Second {
		b.fail("relay.speedtest.interval", "at least 1s")
	}
	if s.Budget < minSpeedtestBudget || s.Budget > maxSpeedtestBudget {
		b.fail("relay.speedtest.budget", "%d bytes is out of range (%d to %d, 64 KiB to 128 MiB)", s.Budget, minSpeedtestBudget, maxSpeedtestBudget)
	}
	if s.Samples < 1 {
		b.fail("relay.speedtest.samples", "at least 1")
	}
	return s
}

// speedtestClash refuses a relay.speedtest.listen that the relay already
// binds: for a forwarded port on relay.listen, or for relay.admin.
func (b *builder) speedtestClash(c *Config) {
	r := c.Relay
	if r == nil || r.Speedtest == nil || !r.Speedtest.Listen.IsValid() {
		return
	}
	l := r.Speedtest.Listen
	port := int(l.Port())
	if a, err := netip.ParseAddrPort(r.Admin); err == nil && a.Port() == l.Port() && overlaps(a.Addr(), l.Addr()) {
		b.fail("relay.speedtest.listen", "%s is already relay.admin (%s)", l, r.Admin)
		return
	}
	if !overlaps(r.Listen, l.Addr()) {
		return
	}
	by := ""
	if pub := c.Gateway.Public; pub != nil && (port == 80 && len(pub.HTTP) > 0 || port == 443 && len(pub.HTTPS) > 0) {
		by = "gateway.public"
	}
	for i, s := range c.Services {
		for j, t := range s.TCP {
			if s.Expose == Public && t.Port == port && by == "" {
				by = fmt.Sprintf("services[%d].tcp[%d]", i, j)
			}
		}
	}
	if by != "" {
		b.fail("relay.speedtest.listen", "the relay already binds port %d on %s (relay.listen) to forward it to %s", port, r.Listen, by)
	}
}

// overlaps reports whether sockets bound to a and b on one port would clash.
func overlaps(a, b netip.Addr) bool {
	a, b = a.Unmap(), b.Unmap()
	if a == b {
		return true
	}
	// 0.0.0.0 takes every IPv4 address; :: takes every address.
	return a.IsUnspecified() && (a.Is6() || b.Is4()) || b.IsUnspecified() && (b.Is6() || a.Is4())
}

func (b *builder) addr(path, s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		b.fail(path, "%q is not an IP address", s)
	}
	return a
}

func (b *builder) gateway(f fileGateway, domain string) Gateway {
	g := Gateway{Limits: Limits{
		ProxyHeaderTimeout:    time.Duration(f.Limits.ProxyHeaderTimeout),
		ReadHeaderTimeout:     time.Duration(f.Limits.ReadHeaderTimeout),
		IdleTimeout:           time.Duration(f.Limits.IdleTimeout),
		MaxHeaderBytes:        f.Limits.MaxHeaderBytes,
		BackendConnectTimeout: time.Duration(f.Limits.BackendConnectTimeout),
		BackendHeaderTimeout:  time.Duration(f.Limits.BackendHeaderTimeout),
		ShutdownGrace:         time.Duration(f.Limits.ShutdownGrace),
	}}
	if g.Limits.MaxHeaderBytes < 4096 {
		b.fail("gateway.limits.max_header_bytes", "%d is too small (at least 4096)", g.Limits.MaxHeaderBytes)
	}
	if g.Limits.ProxyHeaderTimeout <= 0 {
		b.fail("gateway.limits.proxy_header_timeout", "must be more than 0")
	}
	seen := map[string]string{}
	listen := func(path string, addrs []string) []string {
		var out []string
		for i, a := range addrs {
			p := path
			if path != "gateway.admin" {
				p = fmt.Sprintf("%s[%d]", path, i)
			}
			hp := b.hostPort(p, a)
			if prev, dup := seen[hp]; dup {
				b.fail(p, "%s is already used by %s", a, prev)
				continue
			}
			seen[hp] = p
			out = append(out, hp)
		}
		return out
	}
	if p := f.Public; p != nil {
		pub := &PublicListeners{HTTPS: listen("gateway.public.https", p.HTTPS), HTTP: listen("gateway.public.http", p.HTTP)}
		pub.TrustedRelays = b.prefixes("gateway.public.trusted_relays", p.TrustedRelays)
		if len(p.TrustedRelays) == 0 && b.pos["gateway.public.trusted_relays"] != (position{}) {
			b.fail("gateway.public.trusted_relays", "list at least one relay address: public listeners accept nobody else")
		}
		if len(p.HTTPS)+len(p.HTTP) == 0 {
			b.fail("gateway.public", "set https and/or http listener addresses")
		}
		g.Public = pub
	}
	if p := f.Private; p != nil {
		priv := &PrivateListeners{Name: p.Name, FQDN: b.qualify("gateway.private.name", p.Name, domain),
			HTTPS: listen("gateway.private.https", p.HTTPS), HTTP: listen("gateway.private.http", p.HTTP)}
		priv.Allow = b.prefixes("gateway.private.allow", p.Allow)
		for i, a := range p.Address {
			priv.Address = append(priv.Address, b.addr(fmt.Sprintf("gateway.private.address[%d]", i), a))
		}
		if len(p.HTTPS)+len(p.HTTP) == 0 {
			b.fail("gateway.private", "set https and/or http listener addresses")
		}
		g.Private = priv
	}
	if f.Admin != "" && f.Admin != "off" {
		if a := listen("gateway.admin", []string{f.Admin}); len(a) == 1 {
			g.Admin = a[0]
		}
	}
	return g
}

// hostPort validates a listen or dial address and returns it unchanged.
func (b *builder) hostPort(path, s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		b.fail(path, "%q is not host:port (for IPv6 write [::1]:443)", s)
		return s
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		b.fail(path, "%q: port %q is not a number from 0 to 65535", s, port)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			if _, ok := hostname(host); !ok {
				b.fail(path, "%q: %q is neither an IP address nor a host name", s, host)
			}
		}
	}
	return s
}

func (b *builder) prefixes(path string, ss []string) []netip.Prefix {
	var out []netip.Prefix
	for i, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				b.fail(fmt.Sprintf("%s[%d]", path, i), "%q is neither a CIDR prefix (100.64.0.0/10) nor an IP address", s)
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Masked() != p {
			b.fail(fmt.Sprintf("%s[%d]", path, i), "%q has host bits set (did you mean %s?)", s, p.Masked())
			continue
		}
		out = append(out, p)
	}
	return out
}

// qualify appends the domain to a name without a dot.
func (b *builder) qualify(path, name, domain string) string {
	h, ok := hostname(name)
	if !ok {
		b.fail(path, "%q is not a host name", name)
		return ""
	}
	if strings.Contains(h, ".") {
		return h
	}
	if domain == "" {
		b.fail(path, "%q has no dot and there is no top-level domain to append (set domain or write the full name)", name)
		return ""
	}
	return h + "." + domain
}

// hostname lower-cases and checks a DNS name; "*." may start it.
func hostname(s string) (string, bool) {
	s = strings.TrimSuffix(strings.ToLower(s), ".")
	if s == "" || len(s) > 253 {
		return "", false
	}
	for i, label := range strings.Split(s, ".") {
		if label == "*" && i == 0 {
			continue
		}
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", false
			}
		}
	}
	return s, true
}

func (b *builder) alerts(m map[string]*fileReceiver) []Receiver {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	var out []Receiver
	for _, n := range names {
		f, path := m[n], "alerts."+n
		if f == nil {
			b.fail(path, "empty receiver (set one of matrix, webhook, ntfy, email)")
			continue
		}
		r := Receiver{Name: n}
		kinds := 0
		if m := f.Matrix; m != nil {
			kinds++
			r.Matrix = &Matrix{Homeserver: b.url(path+".matrix.homeserver", m.Homeserver, "http", "https"), Room: m.Room, AccessToken: NewSecret(m.AccessToken)}
			if !strings.HasPrefix(m.Room, "!") && !strings.HasPrefix(m.Room, "#") {
				b.fail(path+".matrix.room", "%q is not a room id (!id:server) or alias (#name:server)", m.Room)
			}
		}
		if w := f.Webhook; w != nil {
			kinds++
			r.Webhook = &Webhook{URL: b.url(path+".webhook.url", w.URL, "http", "https"), Secret: NewSecret(w.Secret)}
		}
		if nt := f.Ntfy; nt != nil {
			kinds++
			r.Ntfy = &Ntfy{URL: b.url(path+".ntfy.url", nt.URL, "http", "https"), Token: NewSecret(nt.Token)}
		}
		if e := f.Email; e != nil {
			kinds++
			r.Email = &Email{SMTP: b.hostPort(path+".email.smtp", e.SMTP), From: e.From, To: e.To, Username: e.Username, Password: NewSecret(e.Password)}
		}
		if kinds != 1 {
			b.fail(path, "set exactly one of matrix, webhook, ntfy, email (found %d)", kinds)
		}
		out = append(out, r)
	}
	return out
}

func (b *builder) url(path, s string, schemes ...string) *url.URL {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || !slices.Contains(schemes, u.Scheme) {
		if err == nil && u.Scheme != "" && !slices.Contains(schemes, u.Scheme) {
			b.fail(path, "unsupported scheme %q (want %s)", u.Scheme, strings.Join(schemes, ", "))
		} else {
			b.fail(path, "%q is not a URL like %s://host:port", s, schemes[0])
		}
		return nil
	}
	return u
}

func (b *builder) services(fs []*fileService, c *Config) []*Service {
	var out []*Service
	names := map[string]string{}
	routes := map[string]string{}    // host+path -> service path
	httpHosts := map[string]string{} // host -> path of an HTTP service on it
	ptHosts := map[string]string{}   // host -> path of a passthrough service on it
	ports := map[string]string{}     // class/proto/port -> path
	receivers := map[string]bool{}
	for _, r := range c.Alerts {
		receivers[r.Name] = true
	}
	for i, f := range fs {
		path := fmt.Sprintf("services[%d]", i)
		if f == nil {
			b.fail(path, "empty service (give it at least a name)")
			continue
		}
		s := &Service{Name: f.Name, Path: f.Path, Echo: f.Echo, Metrics: f.Metrics, Alert: f.Alert, AllowHTTP: f.AllowHTTP,
			BackendTLS: BackendTLS{ServerName: f.BackendTLS.ServerName, InsecureSkipVerify: f.BackendTLS.InsecureSkipVerify},
			Kubernetes: serviceKubernetes(f)}
		if f.Expose == "public" {
			s.Expose = Public
		}
		if !validName(f.Name) {
			b.fail(path+".name", "%q is not a valid name (lower case letters, digits and dashes, starting with a letter)", f.Name)
		} else if prev, dup := names[f.Name]; dup {
			b.fail(path+".name", "%q is already the name of %s", f.Name, prev)
		}
		names[f.Name] = path
		// Hosts.
		hosts := f.Hosts
		if f.Host != "" {
			if len(f.Hosts) > 0 {
				b.fail(path+".host", "set host or hosts, not both")
			}
			hosts = []string{f.Host}
		}
		for j, h := range hosts {
			hp := path + ".host"
			if f.Host == "" {
				hp = fmt.Sprintf("%s.hosts[%d]", path, j)
			}
			q := b.qualify(hp, h, c.Domain)
			if q == "" {
				continue
			}
			s.Hosts = append(s.Hosts, q)
		}
		if !strings.HasPrefix(s.Path, "/") {
			b.fail(path+".path", "%q must start with /", s.Path)
		}
		for _, h := range s.Hosts {
			if f.Passthrough != nil {
				if prev, dup := ptHosts[h]; dup {
					b.fail(path, "%s is already passed through by %s", h, prev)
				} else if prev, dup := httpHosts[h]; dup {
					b.fail(path, "%s is served by %s: a passthrough service needs hosts of its own", h, prev)
				}
				ptHosts[h] = path
				continue
			}
			if prev, dup := ptHosts[h]; dup {
				b.fail(path, "%s is passed through by %s: it cannot also be served here", h, prev)
			}
			httpHosts[h] = path
			key := h + strings.TrimSuffix(s.Path, "/")
			if prev, dup := routes[key]; dup {
				b.fail(path, "%s%s is already served by %s", h, s.Path, prev)
			}
			routes[key] = path
		}
		// Backends.
		backends := f.Backends
		if f.Backend != "" {
			if len(f.Backends) > 0 {
				b.fail(path+".backend", "set backend or backends, not both")
			}
			backends = []string{f.Backend}
		}
		for j, be := range backends {
			bp := path + ".backend"
			if f.Backend == "" {
				bp = fmt.Sprintf("%s.backends[%d]", path, j)
			}
			if u := b.url(bp, be, "http", "https"); u != nil {
				if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
					b.fail(bp, "%q: a backend is scheme://host:port without path, query or credentials", be)
				}
				s.Backends = append(s.Backends, u)
			}
		}
		if f.Static != "" {
			s.Static = b.abs(f.Static)
			if st, err := os.Stat(s.Static); err != nil || !st.IsDir() {
				b.fail(path+".static", "%q is not a directory", f.Static)
			}
		}
		if f.BackendTLS.CAFile != "" {
			s.BackendTLS.CAFile = b.existingFile(path+".backend_tls.ca_file", f.BackendTLS.CAFile)
		}
		if pt := f.Passthrough; pt != nil {
			s.Passthrough = &Passthrough{Backend: b.hostPort(path+".passthrough.backend", pt.Backend)}
			if pt.ProxyProtocol != "none" {
				s.Passthrough.ProxyProtocol = pt.ProxyProtocol
			}
			switch {
			case len(backends) > 0 || f.Static != "" || f.Echo:
				b.fail(path+".passthrough", "a passthrough service has no backend, backends, static or echo: its backend is passthrough.backend")
			case len(hosts) == 0:
				b.fail(path+".passthrough", "set host (or hosts): the server names passed through")
			case s.Path != "/":
				b.fail(path+".path", "a passthrough service takes whole hosts: no path (labgate does not see requests)")
			case f.AllowHTTP:
				b.fail(path+".allow_http", "a passthrough service is TLS only")
			case f.Health != nil || f.Metrics != "":
				b.fail(path+".passthrough", "health and metrics need HTTP to the backend: a passthrough service has neither")
			}
		}
		kinds := btoi(len(backends) > 0) + btoi(f.Static != "") + btoi(f.Echo) + btoi(f.Passthrough != nil)
		switch {
		case s.Passthrough != nil:
			// Checked above.
		case kinds > 1:
			b.fail(path, "set only one of backend (or backends), static and echo")
		case len(hosts) > 0 && kinds == 0:
			b.fail(path, "a service with a host needs backend, backends, static, echo or passthrough")
		case len(hosts) == 0 && kinds > 0:
			b.fail(path, "backend, static or echo without host: set host (or hosts) to route HTTP to it")
		}
		if len(hosts) == 0 && kinds == 0 && len(f.TCP) == 0 && len(f.UDP) == 0 {
			b.fail(path, "the service exposes nothing: set host and backend, or tcp/udp ports")
		}
		for j, a := range f.Alert {
			if !receivers[a] {
				b.fail(fmt.Sprintf("%s.alert[%d]", path, j), "no receiver %q under alerts%s", a, suggest(a, keysOf(receivers)))
			}
		}
		s.TCP = b.l4(path+".tcp", "tcp", f.TCP, ports)
		s.UDP = b.l4(path+".udp", "udp", f.UDP, ports)
		s.Health = b.health(path+".health", f.Health, s, c) // after tcp: default checks use it
		out = append(out, s)
	}
	return out
}

func keysOf(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func (b *builder) l4(path, proto string, fs []*fileL4, ports map[string]string) []L4Route {
	var out []L4Route
	for i, f := range fs {
		p := fmt.Sprintf("%s[%d]", path, i)
		if f == nil {
			b.fail(p, "empty entry (set port and backend)")
			continue
		}
		r := L4Route{Port: f.Port, Backend: b.hostPort(p+".backend", f.Backend)}
		if f.ProxyProtocol != "none" {
			r.ProxyProtocol = f.ProxyProtocol
		}
		if f.Port < 1 || f.Port > 65535 {
			b.fail(p+".port", "%d is not a port (1-65535)", f.Port)
		}
		// A port is one socket per protocol: a public port is also served privately.
		key := proto + "/" + strconv.Itoa(f.Port)
		if prev, dup := ports[key]; dup {
			b.fail(p+".port", "%s port %d is already used by %s", proto, f.Port, prev)
		}
		ports[key] = p
		out = append(out, r)
	}
	return out
}

func validName(s string) bool {
	if s == "" || len(s) > 63 || s[0] < 'a' || s[0] > 'z' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// relayTarget checks that the relay forwards to where the gateway's public
// listeners are: a relay aimed at another address sends its PROXY headers to
// nothing that expects them. Listeners on every address (0.0.0.0, [::]) match.
func (b *builder) relayTarget(c *Config) {
	if c.Relay == nil || c.Gateway.Public == nil || !c.Relay.Gateway.IsValid() {
		return
	}
	pub := c.Gateway.Public
	var hosts []string
	for _, a := range append(append([]string{}, pub.HTTPS...), pub.HTTP...) {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return // reported already
		}
		ip, err := netip.ParseAddr(host)
		if err != nil || ip.IsUnspecified() || ip.Unmap() == c.Relay.Gateway.Unmap() {
			return
		}
		hosts = append(hosts, a)
	}
	if len(hosts) > 0 {
		b.fail("relay.gateway", "the relay forwards to %s, but the public listeners are on %s: set relay.gateway to the gateway's VPN address",
			c.Relay.Gateway, strings.Join(hosts, ", "))
	}
}
