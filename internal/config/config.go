// Package config turns labgate's one YAML file into one immutable, validated *Config.
//
// Parsing happens in two steps. The YAML is first decoded strictly into the
// private file shapes of file.go (unknown keys are errors, every error carries
// file:line:col and the field path), then built into the exported typed values
// of this file with defaults applied in one place. Nothing mutates a *Config
// after Parse returns: counters and runtime state live in the packages that use
// it. This package imports nothing else from labgate.
package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"time"
)

// Config is one parsed, validated labgate file.
type Config struct {
	// Path is the file the config was read from ("" when parsed from bytes).
	Path string

	Version  int
	Domain   string
	StateDir string

	Log     Log
	TLS     TLS
	DNS     DNS
	Relay   *Relay // nil when the file has no relay section
	Gateway Gateway
	// Alerts are the named receivers, sorted by name.
	Alerts []Receiver
	// Alerting says when alerts are sent (see parse_health.go).
	Alerting Alerting
	// Services in file order.
	Services []*Service
	// Git, when set, is where the lab's config comes from (see Options.Bootstrap).
	Git    *Git
	Status Status
	// Kubernetes is read by `labgate render k8s`.
	Kubernetes Kubernetes

	// positions maps field paths ("services[2].tcp[0].port") to where their
	// values start in the file, for errors found after parsing.
	positions map[string]position
	// shown names the file in errors (Options.Name; "": Path).
	shown string
}

// Errorf returns an Error about the value at path (as in
// "services[2].tcp[0].port"), placed at that value's line and column, or at
// its closest enclosing value's: for checks made after parsing.
func (c *Config) Errorf(path, format string, args ...any) Error {
	file := c.shown
	if file == "" {
		file = c.Path
	}
	e := Error{File: file, Path: path, Msg: fmt.Sprintf(format, args...)}
	for p := path; p != ""; p = parent(p) {
		if pos, ok := c.positions[p]; ok {
			e.Line, e.Col = pos.line, pos.col
			break
		}
	}
	return e
}

// Git is the repository `serve` follows.
type Git struct {
	URL        string
	Branch     string
	Path       string // slash-separated, inside the repository
	Interval   time.Duration
	Username   string
	Password   Secret
	Token      Secret
	SSHKeyFile string
	AgeKeyFile string
	Webhook    *GitWebhook
}

// GitWebhook is the push webhook.
type GitWebhook struct {
	Secret Secret
	Listen string // host:port; "" serves it on the admin listener
}

// Class says who may reach a service: public services are reachable through
// the relay and over the VPN, private services only over the VPN/LAN.
type Class uint8

const (
	Private Class = iota
	Public
)

func (c Class) String() string {
	if c == Public {
		return "public"
	}
	return "private"
}

// Log configures labgate's own logs and the access log.
type Log struct {
	Format string // "text" or "json"
	Level  string // "debug", "info", "warn", "error"
	Access bool   // one line per proxied request
}

// TLS configures where certificates come from.
type TLS struct {
	ACME            *ACME // nil: labgate's internal CA
	PrivateWildcard bool
}

// ACME configures an ACME certificate authority.
type ACME struct {
	Email     string
	Directory string   // the CA's directory URL
	CARoots   []string // PEM files trusted for the ACME server's own TLS
}

// DNS configures record management and the embedded DNS server.
type DNS struct {
	Provider  *DNSProvider // nil: no records are managed
	Owner     string
	Resolvers []string // host:port
	Serve     *DNSServe
	Zone      string // the managed zone: dns.zone, or the domain
	Flatten   bool   // A/AAAA records instead of CNAMEs for services
	TTL       uint32 // seconds
	Interval  time.Duration
	Ownership string // "txt" or "file"
}

// DNSProvider is the public zone's DNS provider.
type DNSProvider struct {
	Type          string // "cloudflare", "rfc2136"
	APIToken      Secret
	Server        string
	TSIGName      string
	TSIGAlgorithm string
	TSIGSecret    Secret
	Proxied       bool // cloudflare: public web services are proxied
}

// DNSServe configures labgate's embedded DNS server.
type DNSServe struct {
	Listen []string
}

// Relay is the relay section, read by `labgate relay` on the VPS.
type Relay struct {
	Name      string
	FQDN      string
	PublicIPs []netip.Addr
	Listen    netip.Addr
	Gateway   netip.Addr
	Admin     string // host:port; "" disables it

	ConnectTimeout    time.Duration
	IdleTimeout       time.Duration
	MaxConnsPerSource int
	UDPFlowTimeout    time.Duration

	Speedtest *Speedtest // nil: the relay path is not measured
}

// Speedtest is the measurement of the relay path: every Interval (give or
// take 10%), the gateway connects from Relay.Gateway to Listen on the relay
// and moves Budget bytes, half each way.
type Speedtest struct {
	Listen   netip.AddrPort // on the relay's VPN address
	Interval time.Duration
	Budget   int // bytes per measurement
	Samples  int // measurements kept
}

// Gateway is everything `labgate serve` listens on.
type Gateway struct {
	Public  *PublicListeners  // nil: no public listeners
	Private *PrivateListeners // nil: no private listeners
	Admin   string            // host:port of /metrics, /healthz; "" disables it
	Limits  Limits
}

// PublicListeners are reached only by trusted relays, which must send a PROXY header.
type PublicListeners struct {
	HTTPS         []string
	HTTP          []string
	TrustedRelays []netip.Prefix
}

// PrivateListeners are reached by VPN and LAN clients directly.
type PrivateListeners struct {
	Name  string
	FQDN  string
	HTTPS []string
	HTTP  []string
	Allow []netip.Prefix // empty: every source
	// Address is what FQDN resolves to, as written in the file; empty: the
	// listeners' addresses (see dns.Desired).
	Address []netip.Addr
}

// Limits bound what one client can make the gateway hold.
type Limits struct {
	ProxyHeaderTimeout    time.Duration
	ReadHeaderTimeout     time.Duration
	IdleTimeout           time.Duration
	MaxHeaderBytes        int
	BackendConnectTimeout time.Duration
	BackendHeaderTimeout  time.Duration // time to the backend's response headers; 0 = none
	ShutdownGrace         time.Duration
}

// Receiver is a named alert receiver.
type Receiver struct {
	Name    string
	Matrix  *Matrix
	Webhook *Webhook
	Ntfy    *Ntfy
	Email   *Email
}

// Matrix sends alerts to a Matrix room.
type Matrix struct {
	Homeserver  *url.URL
	Room        string
	AccessToken Secret
}

// Webhook posts alerts as JSON.
type Webhook struct {
	URL    *url.URL
	Secret Secret // HMAC key; empty: unsigned
}

// Ntfy publishes alerts to an ntfy topic.
type Ntfy struct {
	URL   *url.URL
	Token Secret
}

// Email sends alerts over SMTP.
type Email struct {
	SMTP     string
	From     string
	To       []string
	Username string
	Password Secret
}

// Service is one thing the lab exposes.
type Service struct {
	Name   string
	Hosts  []string // fully qualified, lower case, no trailing dot; may be empty for tcp-only services
	Path   string   // path prefix, "/" by default
	Expose Class
	// Exactly one of Backends, Static, Echo and Passthrough is set for a service with hosts.
	Backends []*url.URL
	Static   string // a directory served as files
	Echo     bool   // answer with a description of the request
	// Passthrough, when set, forwards TLS connections for Hosts undecrypted
	// (routed by SNI) to a backend that terminates TLS itself.
	Passthrough *Passthrough
	BackendTLS  BackendTLS
	Health      *Health
	Metrics     string
	Alert       []string
	TCP         []L4Route
	UDP         []L4Route
	AllowHTTP   bool // serve plain HTTP instead of redirecting to HTTPS
	Kubernetes  ServiceKubernetes
}

// Passthrough forwards TLS connections, routed by SNI, to a backend that
// terminates TLS itself.
type Passthrough struct {
	Backend       string // host:port
	ProxyProtocol string // "", "v1", "v2"
}

// BackendTLS configures how labgate verifies HTTPS backends.
type BackendTLS struct {
	CAFile             string
	ServerName         string
	InsecureSkipVerify bool
}

// Health is the active health check of a service's backends, and the
// checks that decide the service's state (see parse_health.go).
type Health struct {
	Path     string
	Interval time.Duration
	Timeout  time.Duration
	Status   int // expected status; 0 = any 2xx or 3xx
	// Checks are never empty after parsing: the defaults are filled in.
	Checks    []Check
	Outside   bool // also check through the public path (public services)
	Failures  int  // failed rounds in a row before down
	Successes int  // passing rounds in a row before up again
}

// L4Route forwards one port to one backend.
type L4Route struct {
	Port          int
	Backend       string // host:port
	ProxyProtocol string // "", "v1", "v2"
}

// HTTP reports whether the service is reached over HTTP (by host): it has
// hosts and is not a TLS passthrough.
func (s *Service) HTTP() bool { return len(s.Hosts) > 0 && s.Passthrough == nil }

// ClientConfig is the TLS configuration for connecting to an https://
// backend: the gateway's proxy and the health checks both use it. It reads
// CAFile, so it reports a file that is missing or holds no certificate.
func (bt BackendTLS) ClientConfig() (*tls.Config, error) {
	c := &tls.Config{ServerName: bt.ServerName, InsecureSkipVerify: bt.InsecureSkipVerify, MinVersion: tls.VersionTLS12} //nolint:gosec // the user's choice
	if bt.CAFile != "" {
		pem, err := os.ReadFile(bt.CAFile)
		if err != nil {
			return nil, fmt.Errorf("backend_tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("backend_tls.ca_file: no PEM certificate in %s", bt.CAFile)
		}
		c.RootCAs = pool
	}
	return c, nil
}
