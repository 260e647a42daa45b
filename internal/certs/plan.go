package certs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
)

// PlanAction is what serve would do about one certificate.
type PlanAction string

const (
	PlanObtain PlanAction = "obtain" // not in storage
	PlanRenew  PlanAction = "renew"  // in storage, in its renewal window
	PlanKeep   PlanAction = "ok"     // in storage and good
)

// PlanEntry is one certificate of a plan.
type PlanEntry struct {
	Name   string
	Action PlanAction
	// Expiry of the stored certificate (renew, ok).
	Expiry time.Time
	// Reason says why a renewal is due.
	Reason string
}

// PlanACME says, for each name, whether serve would obtain its certificate
// from the CA at directory, renew it, or keep it, reading only what is stored
// in stateDir/acme: the CA is not contacted. A stored certificate is due
// when the CA's last renewal information (ARI) opened its window, else when
// a third of its lifetime is left, the same rules serve follows.
func PlanACME(stateDir, directory string, names []string, now time.Time) ([]PlanEntry, error) {
	storage := &certmagic.FileStorage{Path: filepath.Join(stateDir, "acme")}
	issuerKey := (&certmagic.ACMEIssuer{CA: directory}).IssuerKey()
	ctx := context.Background()
	seen := map[string]bool{}
	var out []PlanEntry
	for _, n := range names {
		n = normalize(n)
		if n == "" || seen[n] {
			continue
		}
		seen[n] = true
		e := PlanEntry{Name: n, Action: PlanObtain}
		certPEM, err := storage.Load(ctx, certmagic.StorageKeys.SiteCert(issuerKey, n))
		if errors.Is(err, fs.ErrNotExist) {
			out = append(out, e)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("certs: reading the stored certificate for %s: %w", n, err)
		}
		leaf, err := firstCert(certPEM)
		if err != nil {
			e.Reason = "the stored certificate cannot be read: " + err.Error()
			out = append(out, e)
			continue
		}
		e.Expiry = leaf.NotAfter
		e.Action, e.Reason = PlanKeep, ""
		ari := storedARI(ctx, storage, certmagic.StorageKeys.SiteMeta(issuerKey, n))
		lifetime := leaf.NotAfter.Sub(leaf.NotBefore)
		switch {
		case !now.Before(leaf.NotAfter):
			e.Action, e.Reason = PlanRenew, "expired"
		case ari != nil && !ari.SelectedTime.IsZero() && !now.Before(ari.SelectedTime):
			e.Action, e.Reason = PlanRenew, "the CA's renewal window (ARI) is open"
		case ari != nil && ari.SelectedTime.IsZero() && ari.HasWindow() && !now.Before(ari.SuggestedWindow.Start):
			e.Action, e.Reason = PlanRenew, "the CA's renewal window (ARI) is open"
		case leaf.NotAfter.Sub(now) <= time.Duration(float64(lifetime)*certmagic.DefaultRenewalWindowRatio):
			e.Action, e.Reason = PlanRenew, "a third of its lifetime is left"
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b PlanEntry) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out, nil
}

// storedARI is the renewal information certmagic keeps in a certificate's
// metadata, or nil.
func storedARI(ctx context.Context, s certmagic.Storage, key string) *acme.RenewalInfo {
	b, err := s.Load(ctx, key)
	if err != nil {
		return nil
	}
	var meta struct {
		IssuerData struct {
			RenewalInfo *acme.RenewalInfo `json:"renewal_info"`
		} `json:"issuer_data"`
	}
	if json.Unmarshal(b, &meta) != nil {
		return nil
	}
	return meta.IssuerData.RenewalInfo
}
