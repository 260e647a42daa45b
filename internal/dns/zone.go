package dns

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/labgate/labgate/internal/config"
)

// Zone is one reconciliation's inputs: a provider, the owner id, what is
// desired, and where ownership is kept.
type Zone struct {
	Provider  Provider
	Describe  string // the provider, for people: "rfc2136 at ns1.example.org:53"
	Owner     string
	Desired   Desired
	Ownership *FileOwnership // nil: ownership TXT records in the zone
}

// NewZone returns the zone cfg manages, or nil when cfg has no provider.
// It makes no network call.
func NewZone(cfg *config.Config, opts ProviderOptions) (*Zone, error) {
	if err := Check(cfg); err != nil {
		return nil, err
	}
	p, err := NewProvider(cfg, opts)
	if err != nil || p == nil {
		return nil, err
	}
	z := &Zone{Provider: p, Owner: cfg.DNS.Owner, Desired: DesiredRecords(cfg, PublicView)}
	switch prov := cfg.DNS.Provider; prov.Type {
	case "rfc2136":
		z.Describe = "rfc2136 at " + prov.Server
	default:
		z.Describe = prov.Type
	}
	if cfg.DNS.Ownership == "file" {
		z.Ownership = &FileOwnership{Path: filepath.Join(cfg.StateDir, OwnershipFile)}
		z.Describe += ", ownership in " + z.Ownership.Path
	}
	return z, nil
}

// Plan lists the zone and plans. An error means no plan at all: nothing
// may be applied (and certainly nothing deleted) from a failed listing.
func (z *Zone) Plan(ctx context.Context) (Changeset, error) {
	cur, err := z.Provider.Records(ctx)
	if err != nil {
		return Changeset{}, err
	}
	if z.Ownership != nil {
		if cur, err = z.Ownership.Synthesize(cur, z.Desired.Zone, z.Owner); err != nil {
			return Changeset{}, err
		}
	}
	return PlanZone(cur, z.Desired.Records, z.Owner, z.Desired.Zone), nil
}

// Apply applies the changes in order and returns those that were made. It
// goes on after a failed change (the others do not depend on it, but for a
// delete that freed a name: that create then fails on its prerequisites) and
// returns every error joined.
func (z *Zone) Apply(ctx context.Context, cs Changeset) ([]Change, error) {
	var done []Change
	var errs []error
	for _, c := range cs.Changes {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		pc := c
		if z.Ownership != nil {
			pc.Owner = Record{}
		}
		if err := z.Provider.Apply(ctx, pc); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c, err))
			continue
		}
		if z.Ownership != nil {
			if err := z.Ownership.Record(c, z.Desired.Zone, z.Owner); err != nil {
				errs = append(errs, fmt.Errorf("%s: made, but not remembered as labgate's: %w", c, err))
			}
		}
		done = append(done, c)
	}
	return done, errors.Join(errs...)
}
