package daemon

import (
	"fmt"
	"net/http"
	"reflect"
	"time"

	"github.com/labgate/labgate/internal/certs"
	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/dns"
)

// acmeState is the ACME source a generation serves from, and what it was
// built from: a reload whose settings are equal keeps the same source, so
// certificates in memory, renewals and issuance in flight carry on.
type acmeState struct {
	acme *certs.ACME
	key  acmeKey
}

// acmeKey is everything an ACME source is built from.
type acmeKey struct {
	StateDir, Email, Directory string
	CARoots, Resolvers         []string
	DNS                        config.DNSProvider
	Zone                       string // the provider's zone (DNS-01)
	HTTP01, TLSALPN01          bool
}

// checkACME is what check and serve refuse in the tls.acme section, beyond
// what parsing checks: unreadable ca_roots and a wildcard nobody can prove.
func checkACME(cfg *config.Config) error {
	a := cfg.TLS.ACME
	if a == nil {
		return nil
	}
	var errs config.Errors
	for i, f := range a.CARoots {
		if err := certs.CheckPEMRoots(f); err != nil {
			errs = append(errs, cfg.Errorf(fmt.Sprintf("tls.acme.ca_roots[%d]", i), "%v", err))
		}
	}
	if cfg.DNS.Provider != nil && cfg.DNS.Zone != "" {
		// DNS-01 is the only challenge with a provider, and the provider
		// writes only in its zone.
		for _, n := range certNames(cfg) {
			if !dns.InZone(n, cfg.DNS.Zone) {
				errs = append(errs, cfg.Errorf("dns.provider",
					"the certificate for %s is obtained with DNS-01 through dns.provider, which can only write records in the zone %s: move the name into the zone, or remove dns.provider (HTTP-01 and TLS-ALPN-01 then prove each name through the gateway)", n, cfg.DNS.Zone))
			}
		}
	}
	if cfg.DNS.Provider == nil {
		if cfg.TLS.PrivateWildcard && hasPrivateWildcard(cfg) {
			errs = append(errs, cfg.Errorf("tls.private_wildcard",
				"a wildcard certificate (*.%s) can only be obtained with the DNS-01 challenge: set dns.provider, or turn private_wildcard off (each private name then gets its own certificate, and appears in Certificate Transparency logs)", cfg.Domain))
		}
		for i, s := range cfg.Services {
			for j, h := range s.Hosts {
				if len(h) > 1 && h[0] == '*' && s.Passthrough == nil {
					errs = append(errs, cfg.Errorf(fmt.Sprintf("services[%d].hosts[%d]", i, j),
						"the wildcard %s can only be obtained with the DNS-01 challenge: set dns.provider", h))
				}
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// hasPrivateWildcard reports whether certNames folds a private name into *.domain.
func hasPrivateWildcard(cfg *config.Config) bool {
	for _, n := range certNames(cfg) {
		if n == "*."+cfg.Domain {
			return true
		}
	}
	return false
}

// acmeSource returns the ACME source for g (whose listeners are bound),
// reusing the running generation's when nothing it was built from changed,
// and starts managing g's names on it.
func (d *Daemon) acmeSource(g *generation) (certs.Source, error) {
	cfg := g.cfg
	key := acmeKey{
		StateDir: cfg.StateDir, Email: cfg.TLS.ACME.Email, Directory: cfg.TLS.ACME.Directory,
		CARoots: cfg.TLS.ACME.CARoots, Resolvers: cfg.DNS.Resolvers,
	}
	if cfg.DNS.Provider != nil {
		key.DNS, key.Zone = *cfg.DNS.Provider, cfg.DNS.Zone
	} else {
		key.HTTP01, key.TLSALPN01 = challenges(g)
	}
	if cur := d.cur; cur != nil && cur.acme != nil && reflect.DeepEqual(cur.acme.key, key) {
		g.acme = cur.acme
	} else {
		opts := certs.ACMEOptions{
			StateDir: key.StateDir, Email: key.Email, Directory: key.Directory, CARoots: key.CARoots,
			Resolvers: key.Resolvers, HTTP01: key.HTTP01, TLSALPN01: key.TLSALPN01,
			Log: d.log, Metrics: d.certm, OnEvent: d.certEvent, RenewCheckInterval: d.opts.RenewCheckInterval,
		}
		if cfg.DNS.Provider != nil {
			cd, err := d.challengeDNS(cfg)
			if err != nil {
				return nil, err
			}
			opts.DNS = cd
		}
		a, err := certs.NewACME(opts)
		if err != nil {
			return nil, cfg.Errorf("tls.acme", "%v", err)
		}
		g.acme = &acmeState{acme: a, key: key}
		d.acmeStorageDamage(cfg.StateDir, a.StorageDamage()) // statefiles.go
		d.log.Info("certificates come from ACME", "ca", key.Directory, "storage", cfg.StateDir+"/acme",
			"challenges", challengesOf(key))
	}
	return g.acme.acme.Manage(certNames(cfg)), nil
}

// challengeDNS returns what writes the DNS-01 records: the file's
// dns.provider, the same provider (and zone) the DNS records are
// reconciled through, unless Options.ChallengeDNS replaces it.
func (d *Daemon) challengeDNS(cfg *config.Config) (certs.ChallengeDNS, error) {
	if d.opts.ChallengeDNS != nil {
		return d.opts.ChallengeDNS(cfg)
	}
	p, err := dns.NewProvider(cfg, dns.ProviderOptions{
		HTTPClient: &http.Client{Timeout: 30 * time.Second},
		Log:        d.log.With("component", "acme-dns"),
	})
	if err != nil {
		return nil, cfg.Errorf("dns.provider", "%v", err)
	}
	return p, nil
}

func challengesOf(k acmeKey) []string {
	if k.DNS.Type != "" {
		return []string{"dns-01"}
	}
	var out []string
	if k.HTTP01 {
		out = append(out, "http-01")
	}
	if k.TLSALPN01 {
		out = append(out, "tls-alpn-01")
	}
	return out
}

// challenges says which challenges g's listeners can answer: HTTP-01 on
// a plain HTTP listener, TLS-ALPN-01 on an HTTPS one (the relay forwards
// the CA's connections to ports 80 and 443 to the public ones).
func challenges(g *generation) (http01, tlsALPN01 bool) {
	for _, s := range g.servers {
		if s.class == nil {
			continue
		}
		if s.tls {
			tlsALPN01 = true
		} else {
			http01 = true
		}
	}
	return http01, tlsALPN01
}

// acmeHTTP wraps a plain HTTP listener's handler: ACME HTTP-01 challenges
// are answered before the redirect to HTTPS.
func acmeHTTP(g *generation, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.acme != nil {
			g.acme.acme.HTTPHandler(next).ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// releaseACME closes old's ACME source unless next still uses it.
func releaseACME(old, next *generation) {
	if old == nil || old.acme == nil {
		return
	}
	if next != nil && next.acme == old.acme {
		return
	}
	old.acme.acme.Close()
}

// PlanCertificates says, without contacting the CA, which certificates
// serve would obtain, renew or keep for cfg: the certificate part of
// `labgate plan`. It is empty when the file has no tls.acme.
func PlanCertificates(cfg *config.Config, now time.Time) ([]certs.PlanEntry, error) {
	if cfg.TLS.ACME == nil || !needsTLS(cfg) {
		return nil, nil
	}
	if err := checkACME(cfg); err != nil {
		return nil, err
	}
	return certs.PlanACME(cfg.StateDir, cfg.TLS.ACME.Directory, certNames(cfg), now)
}
