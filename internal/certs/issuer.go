package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// leafLifetime is how long an internal leaf certificate is valid; it is
// re-issued once 2/3 of its life has passed.
const leafLifetime = 7 * 24 * time.Hour

// Issuer returns a Source that serves leaf certificates for exactly names:
// host names, and "*.example.org" wildcards that match one label. Names are
// matched case-insensitively without a trailing dot; they are expected to be
// validated by the config already. Any other server name, or none, fails the
// handshake.
//
// A leaf is issued by the CA on first use and kept in memory only. It lives 7
// days (never beyond the root) and is re-issued on the next handshake once
// 2/3 of its life has passed; concurrent handshakes for one name wait for a
// single issuance. Leaves carry an ECDSA P-256 key, the name as their only
// DNS SAN, ExtKeyUsageServerAuth and a random 128-bit serial; the chain is
// leaf + root, with Leaf set.
func (ca *CA) Issuer(names []string) Source {
	is := &issuer{ca: ca, names: newNames(), leaves: map[string]*leafEntry{}}
	for _, n := range names {
		is.names.add(n)
	}
	return is
}

type issuer struct {
	ca    *CA
	names names // immutable after Issuer

	mu     sync.Mutex
	leaves map[string]*leafEntry // by configured name

	issued atomic.Int64 // leaves signed, for tests
}

// leafEntry is the cached leaf for one configured name, and the issuance in
// flight for it, if any.
type leafEntry struct {
	cert    *tls.Certificate
	renewAt time.Time
	call    *issueCall
}

// issueCall is one issuance that concurrent handshakes wait for. cert and
// err are written before done is closed.
type issueCall struct {
	done chan struct{}
	cert *tls.Certificate
	err  error
}

func (is *issuer) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name, ok := is.names.match(hello.ServerName)
	if !ok {
		return nil, unknownName(hello.ServerName)
	}

	is.mu.Lock()
	e := is.leaves[name]
	if e == nil {
		e = &leafEntry{}
		is.leaves[name] = e
	}
	if e.cert != nil && is.ca.now().Before(e.renewAt) {
		cert := e.cert
		is.mu.Unlock()
		return cert, nil
	}
	if c := e.call; c != nil {
		is.mu.Unlock()
		ctx := hello.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		select {
		case <-c.done:
			return c.cert, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c := &issueCall{done: make(chan struct{})}
	e.call = c
	old := e.cert
	is.mu.Unlock()

	cert, renewAt, err := is.ca.issue(name)
	if err == nil {
		is.issued.Add(1)
	}

	is.mu.Lock()
	e.call = nil
	if err == nil {
		e.cert, e.renewAt = cert, renewAt
	}
	is.mu.Unlock()

	if err != nil && old != nil && is.ca.now().Before(old.Leaf.NotAfter) {
		// Re-issuing failed, but the current leaf is still valid: keep
		// serving it; the next handshake tries again.
		cert, err = old, nil
	}
	c.cert, c.err = cert, err
	close(c.done)
	return cert, err
}

// issue signs a new leaf certificate for name and says when to replace it.
func (ca *CA) issue(name string) (*tls.Certificate, time.Time, error) {
	now := ca.now()
	notAfter := now.Add(leafLifetime)
	if notAfter.After(ca.root.NotAfter) {
		notAfter = ca.root.NotAfter
	}
	if !now.Before(notAfter) {
		return nil, time.Time{}, fmt.Errorf("certs: cannot issue a certificate for %q: the internal CA's root %s expired on %s",
			name, ca.RootPath(), ca.root.NotAfter.UTC().Format(time.DateOnly))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("certs: issuing a certificate for %q: %w", name, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("certs: issuing a certificate for %q: %w", name, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.root, key.Public(), ca.key)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("certs: issuing a certificate for %q: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("certs: issuing a certificate for %q: %w", name, err)
	}
	cert := &tls.Certificate{
		Certificate: [][]byte{der, ca.root.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}
	renewAt := now.Add(notAfter.Sub(now) * 2 / 3)
	return cert, renewAt, nil
}

// Expiry says when the leaf served for name (a host this source serves)
// expires; false before the first handshake for it issued one.
func (is *issuer) Expiry(name string) (time.Time, bool) {
	n, ok := is.names.match(name)
	if !ok {
		return time.Time{}, false
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	if e := is.leaves[n]; e != nil && e.cert != nil && e.cert.Leaf != nil {
		return e.cert.Leaf.NotAfter, true
	}
	return time.Time{}, false
}
