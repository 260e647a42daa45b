package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
)

// Static is a Source that serves fixed certificates by name: for tests, and
// for user-provided certificate files later. It is immutable and safe for
// concurrent use.
type Static struct {
	names names
	certs map[string]*tls.Certificate // by normalized name or wildcard pattern
}

// NewStatic returns a Static serving each certificate for the DNS names in
// its leaf (Leaf, or parsed from Certificate[0] when Leaf is nil), including
// "*.example.org" wildcards. A certificate without DNS names, or two
// certificates claiming one name, is an error.
func NewStatic(certs ...*tls.Certificate) (*Static, error) {
	s := &Static{names: newNames(), certs: map[string]*tls.Certificate{}}
	for i, c := range certs {
		leaf := c.Leaf
		if leaf == nil {
			if len(c.Certificate) == 0 {
				return nil, fmt.Errorf("certificate %d: empty chain", i)
			}
			var err error
			if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
				return nil, fmt.Errorf("certificate %d: %w", i, err)
			}
		}
		if len(leaf.DNSNames) == 0 {
			return nil, fmt.Errorf("certificate %d (%s): no DNS names to serve it for", i, leaf.Subject)
		}
		for _, dns := range leaf.DNSNames {
			name := s.names.add(dns)
			if name == "" {
				return nil, fmt.Errorf("certificate %d: empty DNS name", i)
			}
			if _, dup := s.certs[name]; dup {
				return nil, fmt.Errorf("certificate %d: %s is already served by another certificate", i, name)
			}
			s.certs[name] = c
		}
	}
	return s, nil
}

// GetCertificate serves the certificate for the client's server name.
func (s *Static) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name, ok := s.names.match(hello.ServerName)
	if !ok {
		return nil, unknownName(hello.ServerName)
	}
	return s.certs[name], nil
}
