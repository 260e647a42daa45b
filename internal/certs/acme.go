package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	"go.uber.org/zap"
)

// ACMETLS1 is the ALPN protocol of the TLS-ALPN-01 challenge: TLS listeners
// served by an [ACME] source must offer it in tls.Config.NextProtos.
const ACMETLS1 = acmez.ACMETLS1Protocol

// Directory URLs of Let's Encrypt.
const (
	LetsEncrypt        = "https://acme-v02.api.letsencrypt.org/directory"
	LetsEncryptStaging = "https://acme-staging-v02.api.letsencrypt.org/directory"
)

// ACMEOptions configure an [ACME] source.
type ACMEOptions struct {
	// StateDir is labgate's state_dir: the account, the certificates and
	// their keys live in StateDir/acme.
	StateDir string
	// Email is the account's contact.
	Email string
	// Directory is the CA's ACME directory URL.
	Directory string
	// CARoots are PEM files trusted, besides the system's roots, for the
	// ACME server's own HTTPS (a private ACME CA).
	CARoots []string

	// DNS, when set, solves DNS-01 (the only challenge then): it is how
	// wildcards are obtained, and works for names the CA cannot reach.
	DNS ChallengeDNS
	// Resolvers (host:port) are asked whether a DNS-01 record has
	// propagated; empty uses /etc/resolv.conf.
	Resolvers []string

	// HTTP01 enables the HTTP-01 challenge (when DNS is nil): the CA
	// connects to port 80 of the name, which must reach a plain HTTP
	// listener whose handler is wrapped by [ACME.HTTPHandler].
	HTTP01 bool
	// TLSALPN01 enables the TLS-ALPN-01 challenge (when DNS is nil): the
	// CA connects to port 443 of the name, which must reach a TLS listener
	// served by this source with [ACMETLS1] in its NextProtos.
	TLSALPN01 bool

	// Log receives certmagic's log lines (nil discards them).
	Log *slog.Logger
	// Metrics, if set, counts events and exports expiry times.
	Metrics *Metrics
	// OnEvent, if set, is called for every obtained, renewed or failed
	// certificate (for alerts). It must return quickly.
	OnEvent func(Event)
	// RenewCheckInterval is how often certificates are checked for renewal
	// (and OCSP staples refreshed); 0 uses certmagic's 10 minutes.
	RenewCheckInterval time.Duration
}

// EventKind says what happened to a certificate.
type EventKind string

const (
	Obtained EventKind = "obtained"
	Renewed  EventKind = "renewed"
	Failed   EventKind = "failed"
)

// Event is one thing that happened to a managed certificate.
type Event struct {
	Kind EventKind
	// Name is the certificate's name ("vault.example.org", "*.example.org").
	Name string
	// Renewal is true when a failure happened while renewing.
	Renewal bool
	// Expiry of the new certificate (obtained, renewed).
	Expiry time.Time
	// Err is why it failed (failed).
	Err error
}

// ACME obtains and renews certificates from an ACME CA with certmagic and
// serves them. It outlives config generations: each generation calls
// [ACME.Manage] with its names and serves through the Source it returns;
// names already managed are not obtained again, and certificates in storage
// are loaded without asking the CA (a restart makes no request to the CA
// until a renewal is due).
//
// Renewal follows the CA's ARI window (RFC 9773, with "replaces" in the new
// order), or happens with a third of the lifetime left when the CA has no
// ARI; failures are retried with exponential backoff. OCSP responses are
// stapled when the certificate names a responder, and a responder that does
// not answer only costs the staple.
type ACME struct {
	opts    ACMEOptions
	log     *slog.Logger
	cache   *certmagic.Cache
	cfg     *certmagic.Config
	issuer  *certmagic.ACMEIssuer
	storage *certmagic.FileStorage

	ctx    context.Context
	cancel context.CancelFunc

	decoy net.Listener // see NewACME

	mu sync.Mutex
	// managed are the names of the last Manage, each with what cancels its
	// background work (obtaining, with its retries) once it is dropped.
	managed map[string]context.CancelFunc
	// damage is what NewACME found damaged in storage (storage.go).
	damage []StorageDamage
	// retired: a newer source took over, this one no longer exports
	// expiry times (see Retire).
	retired bool

	closeOnce sync.Once
}

// NewACME prepares an ACME source; nothing is obtained before [ACME.Manage].
// It reads the ca_roots files and fails with an error naming a file that is
// unreadable or holds no PEM certificate.
func NewACME(opts ACMEOptions) (*ACME, error) {
	if opts.Directory == "" {
		return nil, errors.New("certs: ACME needs a directory URL")
	}
	if opts.StateDir == "" {
		return nil, errors.New("certs: ACME needs a state directory")
	}
	roots, err := trustedRoots(opts.CARoots)
	if err != nil {
		return nil, err
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	zl := zap.New(slogCore{h: log.Handler()})
	a := &ACME{
		opts:    opts,
		log:     log,
		storage: &certmagic.FileStorage{Path: filepath.Join(opts.StateDir, "acme")},
		managed: map[string]context.CancelFunc{},
	}
	a.damage = checkStorage(a.storage.Path, time.Now())
	for _, d := range a.damage {
		what := "ACME storage damaged: "
		if d.Unreadable {
			what = "ACME storage unreadable: "
		}
		log.Error(what+d.Advice(), "file", d.Path, "error", d.Err)
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return a.cfg, nil },
		RenewCheckInterval: opts.RenewCheckInterval,
		OCSPCheckInterval:  opts.RenewCheckInterval,
		Logger:             zl,
	})
	// Every field certmagic would otherwise take from its package-level
	// defaults is set here.
	a.cfg = certmagic.New(a.cache, certmagic.Config{
		RenewalWindowRatio: certmagic.DefaultRenewalWindowRatio,
		OnEvent:            a.onEvent,
		KeySource:          certmagic.StandardKeyGenerator{KeyType: certmagic.P256},
		Storage:            a.storage,
		Logger:             zl,
		Issuers:            []certmagic.Issuer{}, // set below: the issuer needs the config
	})
	testCA := ""
	if opts.Directory == LetsEncrypt {
		// Only for Let's Encrypt: a failed attempt is retried against
		// staging first. Any other CA keeps TestCA empty, which also keeps
		// ARI's "replaces" on renewals.
		testCA = LetsEncryptStaging
	}
	iss := certmagic.ACMEIssuer{
		CA:                      opts.Directory,
		TestCA:                  testCA,
		Email:                   opts.Email,
		Agreed:                  true,
		TrustedRoots:            roots,
		DisableHTTPChallenge:    !opts.HTTP01,
		DisableTLSALPNChallenge: !opts.TLSALPN01,
		CertObtainTimeout:       90 * time.Second,
		Logger:                  zl,
		HTTPProxy:               http.ProxyFromEnvironment,
	}
	// certmagic starts a challenge server of its own on the challenge
	// port unless something already listens there (it binds, and on
	// "address in use" dials to check). labgate's listeners answer the
	// challenges, so certmagic is pointed at a loopback socket kept for
	// that purpose: it binds nothing, and probes none of the gateway's
	// listeners (a public one would log a refused connection without PROXY).
	if opts.DNS == nil && (opts.HTTP01 || opts.TLSALPN01) {
		decoy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			a.cancel()
			a.cache.Stop()
			return nil, fmt.Errorf("certs: %w", err)
		}
		a.decoy = decoy
		go func() {
			for {
				c, err := decoy.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		port := decoy.Addr().(*net.TCPAddr).Port
		iss.ListenHost, iss.AltHTTPPort, iss.AltTLSALPNPort = "127.0.0.1", port, port
	}
	if opts.DNS != nil {
		iss.DNS01Solver = &dns01Solver{dns: opts.DNS, resolvers: opts.Resolvers, interval: time.Second, timeout: 2 * time.Minute}
	}
	a.issuer = certmagic.NewACMEIssuer(a.cfg, iss)
	a.cfg.Issuers = []certmagic.Issuer{a.issuer}
	return a, nil
}

// Manage makes names the managed set: certificates missing from memory are
// loaded from storage or obtained in the background (with retries), names
// no longer listed stop being renewed. It returns the Source that serves
// exactly names. Calling it again with the same names changes nothing.
func (a *ACME) Manage(names []string) Source {
	src := &acmeSource{a: a, names: newNames()}
	want := map[string]bool{}
	var add []string
	for _, n := range names {
		n = src.names.add(n)
		if n == "" || want[n] {
			continue
		}
		want[n] = true
	}
	a.mu.Lock()
	var remove []certmagic.SubjectIssuer
	for n, stop := range a.managed {
		if !want[n] {
			// An obtain still retrying (a name that keeps failing) stops
			// here: certmagic would otherwise retry it against the CA for
			// days after the name left the file.
			stop()
			delete(a.managed, n)
			remove = append(remove, certmagic.SubjectIssuer{Subject: n})
			if !a.retired {
				a.opts.Metrics.forget(n)
			}
		}
	}
	ctxs := map[string]context.Context{}
	for n := range want {
		if _, ok := a.managed[n]; !ok {
			ctx, cancel := context.WithCancel(a.ctx)
			a.managed[n], ctxs[n] = cancel, ctx
			add = append(add, n)
		}
	}
	a.mu.Unlock()
	slices.Sort(add)
	if len(remove) > 0 {
		a.cache.RemoveManaged(remove)
	}
	for _, n := range add {
		if err := a.cfg.ManageAsync(ctxs[n], []string{n}); err != nil {
			a.log.Error("certificates: starting management", "name", n, "error", err)
		}
	}
	return src
}

// HTTPHandler answers ACME HTTP-01 challenges for the certificates being
// obtained and passes every other request to next.
func (a *ACME) HTTPHandler(next http.Handler) http.Handler {
	return a.issuer.HTTPChallengeHandler(next)
}

// Close stops renewals, retries and OCSP refreshes.
func (a *ACME) Close() {
	a.closeOnce.Do(func() {
		a.Retire()
		a.cancel()
		a.cache.Stop()
		if a.decoy != nil {
			a.decoy.Close()
		}
	})
}

type acmeSource struct {
	a     *ACME
	names names
}

func (s *acmeSource) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if _, ok := s.names.match(hello.ServerName); !ok {
		return nil, unknownName(hello.ServerName)
	}
	cert, err := s.a.cfg.GetCertificate(hello)
	if err != nil {
		return nil, fmt.Errorf("certs: no certificate for %q yet: %w", hello.ServerName, err)
	}
	return cert, nil
}

func (a *ACME) onEvent(ctx context.Context, event string, data map[string]any) error {
	var ev Event
	switch event {
	case "cert_obtained":
		ev.Kind = Obtained
		if renewal, _ := data["renewal"].(bool); renewal {
			ev.Kind = Renewed
		}
		ev.Name, _ = data["identifier"].(string)
		if path, ok := data["certificate_path"].(string); ok {
			ev.Expiry = a.storedExpiry(ctx, path)
		}
	case "cert_failed":
		ev.Kind = Failed
		ev.Name, _ = data["identifier"].(string)
		ev.Renewal, _ = data["renewal"].(bool)
		ev.Err, _ = data["error"].(error)
		a.mu.Lock()
		_, managed := a.managed[ev.Name]
		a.mu.Unlock()
		if !managed || a.ctx.Err() != nil {
			// The name left the file, or the source was closed (a reload
			// with other ACME settings, a stop), which cancelled its
			// obtain: no failure to report (nor to alert on).
			a.log.Debug("certificate no longer wanted", "name", ev.Name, "error", ev.Err)
			return nil
		}
	case "cached_managed_cert":
		// Loaded from storage or obtained: export its expiry.
		sans, _ := data["sans"].([]string)
		for _, n := range sans {
			for _, c := range a.cache.AllMatchingCertificates(n) {
				if c.Leaf != nil && slices.Contains(c.Names, n) {
					a.setExpiry(n, c.Leaf.NotAfter)
				}
			}
		}
		return nil
	default:
		return nil
	}
	if ev.Kind != Failed && !ev.Expiry.IsZero() {
		a.setExpiry(ev.Name, ev.Expiry)
	}
	if m := a.opts.Metrics; m != nil {
		m.events.WithLabelValues(string(ev.Kind)).Inc()
	}
	if ev.Kind == Failed {
		a.log.Warn("certificate not obtained", "name", ev.Name, "renewal", ev.Renewal, "error", ev.Err)
	} else {
		a.log.Info("certificate "+string(ev.Kind), "name", ev.Name, "expiry", ev.Expiry)
	}
	if a.opts.OnEvent != nil {
		a.opts.OnEvent(ev)
	}
	return nil
}

func (a *ACME) setExpiry(name string, t time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock() // held: Retire waits for an export in progress
	if _, managed := a.managed[name]; managed && !a.retired {
		a.opts.Metrics.set(name, t)
	}
}

// Retire stops a from exporting expiry times, for good: a newer source (or
// none, when tls.acme left the file) owns labgate_cert_expiry_timestamp_seconds
// from then on. Call it before [Metrics.Retain], so the names this source
// still manages while its generation drains are not exported again.
func (a *ACME) Retire() {
	a.mu.Lock()
	a.retired = true
	a.mu.Unlock()
}

// managedNames returns the names of the last Manage.
func (a *ACME) managedNames() map[string]bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]bool, len(a.managed))
	for n := range a.managed {
		out[n] = true
	}
	return out
}

func (a *ACME) storedExpiry(ctx context.Context, key string) time.Time {
	b, err := a.storage.Load(ctx, key)
	if err != nil {
		return time.Time{}
	}
	leaf, err := firstCert(b)
	if err != nil {
		return time.Time{}
	}
	return leaf.NotAfter
}

func firstCert(pemBytes []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

// trustedRoots is the system pool plus the PEM files, or nil for the
// system pool alone.
func trustedRoots(files []string) (*x509.CertPool, error) {
	if len(files) == 0 {
		return nil, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, f := range files {
		if err := CheckPEMRoots(f); err != nil {
			return nil, err
		}
		b, _ := os.ReadFile(f)
		pool.AppendCertsFromPEM(b)
	}
	return pool, nil
}

// CheckPEMRoots reports whether file can be read and holds at least one PEM
// certificate, with an error a user can act on.
func CheckPEMRoots(file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", file, errors.Unwrap(err))
	}
	if !x509.NewCertPool().AppendCertsFromPEM(b) {
		return fmt.Errorf("%s holds no PEM certificate (want the CA's root, -----BEGIN CERTIFICATE-----)", file)
	}
	return nil
}

// Expiry says when the certificate served for name (a host this source
// serves) expires; false when none is loaded yet.
func (s *acmeSource) Expiry(name string) (time.Time, bool) {
	n, ok := s.names.match(name)
	if !ok {
		return time.Time{}, false
	}
	var exp time.Time
	for _, c := range s.a.cache.AllMatchingCertificates(n) {
		if c.Leaf != nil && slices.Contains(c.Names, n) && c.Leaf.NotAfter.After(exp) {
			exp = c.Leaf.NotAfter
		}
	}
	return exp, !exp.IsZero()
}
