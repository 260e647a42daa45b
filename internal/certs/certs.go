// Package certs decides where the gateway's TLS certificates come from.
//
// Every TLS listener asks a [Source] for a certificate during the handshake
// (it is plugged in as tls.Config.GetCertificate). Two kinds exist today:
//
//   - labgate's own internal certificate authority ([CA], [CA.Issuer]), used
//     when the config has no tls.acme: LAN-only labs and the quickstart. The
//     CA's root lives in state_dir/ca and is created on first use; devices
//     trust it once (see [CA.TrustHint]) and every service name then gets a
//     short-lived leaf certificate issued in memory on first use.
//   - [Static], fixed certificates (tests, and user-provided certificate
//     files later).
//   - [ACME], certificates from an ACME CA (Let's Encrypt, or a private
//     one) obtained and renewed with certmagic, kept in state_dir/acme:
//     HTTP-01 and TLS-ALPN-01 on the gateway's own listeners, or DNS-01
//     through a [ChallengeDNS] (wildcards). [PlanACME] is its dry run.
//
// A Source only ever serves the names it was built for: an unknown or empty
// server name fails the handshake instead of signing an arbitrary name.
// Matching is case-insensitive, ignores a trailing dot, and a "*.example.org"
// wildcard matches exactly one label (a.example.org, not a.b.example.org or
// example.org).
//
// This package imports nothing else from labgate. See docs/certificates.md.
package certs

import (
	"crypto/tls"
	"fmt"
	"strings"
)

// Source provides certificates to the TLS listeners.
// Implementations must be safe for concurrent use.
type Source interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// normalize lower-cases a host name and drops one trailing dot.
func normalize(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// names is a set of configured host names: exact ones and one-label
// wildcards ("*.example.org"), all normalized.
type names struct {
	exact    map[string]bool
	wildcard map[string]string // parent ("example.org") -> pattern ("*.example.org")
}

func newNames() names {
	return names{exact: map[string]bool{}, wildcard: map[string]string{}}
}

// add records name (normalized) and returns the normalized form; "" is ignored.
func (n names) add(name string) string {
	name = normalize(name)
	if name == "" {
		return ""
	}
	if parent, ok := strings.CutPrefix(name, "*."); ok && parent != "" && !strings.Contains(parent, "*") {
		n.wildcard[parent] = name
		return name
	}
	n.exact[name] = true
	return name
}

// match returns the configured name that covers the server name sni: the
// exact name if configured, else the wildcard one label above it.
func (n names) match(sni string) (string, bool) {
	sni = normalize(sni)
	if sni == "" {
		return "", false
	}
	if n.exact[sni] {
		return sni, true
	}
	label, parent, ok := strings.Cut(sni, ".")
	if !ok || label == "" || parent == "" {
		return "", false
	}
	pattern, ok := n.wildcard[parent]
	return pattern, ok
}

// unknownName is the handshake error for a server name no certificate covers.
func unknownName(sni string) error {
	if normalize(sni) == "" {
		return fmt.Errorf("certs: client sent no server name (SNI); labgate only serves certificates for configured hosts")
	}
	return fmt.Errorf("certs: no certificate for %q: not a configured host", sni)
}
