package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/labgate/labgate/internal/config"
)

// Provider is a DNS zone labgate writes to.
type Provider interface {
	// Records lists every RRset of the zone, ownership records included.
	Records(ctx context.Context) ([]Record, error)
	// Apply makes one change of a plan, and only if the zone still holds
	// what the plan was made from (the listed RRset and ownership record);
	// otherwise it changes nothing and returns an error wrapping ErrChanged.
	Apply(ctx context.Context, c Change) error

	// SetTXT adds one TXT value at fqdn; other values there stay (ACME DNS-01).
	SetTXT(ctx context.Context, fqdn, value string) error
	// DeleteTXT removes exactly that one TXT value from fqdn.
	DeleteTXT(ctx context.Context, fqdn, value string) error
}

// ErrChanged says that the zone changed between plan and apply: the change
// was not made. The next reconciliation plans again from what is there.
var ErrChanged = errors.New("the record changed since it was listed")

// ProviderOptions are what a provider needs besides the config.
type ProviderOptions struct {
	HTTPClient *http.Client // Cloudflare; nil: http.DefaultClient
	Log        *slog.Logger // nil: discard
	// CloudflareURL is the API base; "" is https://api.cloudflare.com/client/v4.
	CloudflareURL string
}

// NewProvider returns the provider of cfg's dns.provider for the zone
// cfg.DNS.Zone, or nil when there is none. It makes no network call.
func NewProvider(cfg *config.Config, opts ProviderOptions) (Provider, error) {
	p := cfg.DNS.Provider
	if p == nil {
		return nil, nil
	}
	if cfg.DNS.Zone == "" {
		return nil, errors.New("dns.provider: set domain (or dns.zone): the zone whose records labgate manages")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	switch p.Type {
	case "rfc2136":
		return &RFC2136{Server: p.Server, Zone: cfg.DNS.Zone, KeyName: p.TSIGName, Algorithm: p.TSIGAlgorithm, Secret: p.TSIGSecret.Value()}, nil
	case "cloudflare":
		return &Cloudflare{Token: p.APIToken.Value(), Zone: cfg.DNS.Zone, Client: opts.HTTPClient, BaseURL: opts.CloudflareURL}, nil
	}
	return nil, fmt.Errorf("dns.provider.type: unknown provider %q", p.Type)
}
