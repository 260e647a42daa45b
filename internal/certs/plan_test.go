package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/google/go-cmp/cmp"
	"github.com/mholt/acmez/v3/acme"
)

func TestPlanACME(t *testing.T) {
	const directory = "https://ca.example.org/acme/directory"
	day := 24 * time.Hour
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	type stored struct {
		name                string
		notBefore, notAfter time.Time
		ari                 *acme.RenewalInfo
		corrupt             bool
	}
	window := func(start, end, selected time.Time) *acme.RenewalInfo {
		ri := &acme.RenewalInfo{SelectedTime: selected}
		ri.SuggestedWindow.Start, ri.SuggestedWindow.End = start, end
		return ri
	}
	for _, tc := range []struct {
		name   string
		stored []stored
		names  []string
		want   []PlanEntry
	}{
		{
			name:  "nothing stored: obtain, sorted, duplicates once",
			names: []string{"www.lab.test", "*.lab.test", "WWW.lab.test."},
			want:  []PlanEntry{{Name: "*.lab.test", Action: PlanObtain}, {Name: "www.lab.test", Action: PlanObtain}},
		},
		{
			name:   "fresh: ok with its expiry",
			stored: []stored{{name: "www.lab.test", notBefore: at(-day), notAfter: at(89 * day)}},
			names:  []string{"www.lab.test"},
			want:   []PlanEntry{{Name: "www.lab.test", Action: PlanKeep, Expiry: at(89 * day)}},
		},
		{
			name:   "a wildcard is found under its storage name",
			stored: []stored{{name: "*.lab.test", notBefore: at(-day), notAfter: at(89 * day)}},
			names:  []string{"*.lab.test"},
			want:   []PlanEntry{{Name: "*.lab.test", Action: PlanKeep, Expiry: at(89 * day)}},
		},
		{
			name:   "a third of the lifetime left: renew",
			stored: []stored{{name: "www.lab.test", notBefore: at(-70 * day), notAfter: at(20 * day)}},
			names:  []string{"www.lab.test"},
			want:   []PlanEntry{{Name: "www.lab.test", Action: PlanRenew, Expiry: at(20 * day), Reason: "a third of its lifetime is left"}},
		},
		{
			name:   "expired: renew",
			stored: []stored{{name: "www.lab.test", notBefore: at(-91 * day), notAfter: at(-day)}},
			names:  []string{"www.lab.test"},
			want:   []PlanEntry{{Name: "www.lab.test", Action: PlanRenew, Expiry: at(-day), Reason: "expired"}},
		},
		{
			name: "the ARI time chosen has passed: renew long before the lifetime says so",
			stored: []stored{{name: "www.lab.test", notBefore: at(-day), notAfter: at(89 * day),
				ari: window(at(-2*time.Hour), at(time.Hour), at(-time.Hour))}},
			names: []string{"www.lab.test"},
			want:  []PlanEntry{{Name: "www.lab.test", Action: PlanRenew, Expiry: at(89 * day), Reason: "the CA's renewal window (ARI) is open"}},
		},
		{
			name: "an ARI window without a chosen time, open: renew",
			stored: []stored{{name: "www.lab.test", notBefore: at(-day), notAfter: at(89 * day),
				ari: window(at(-time.Hour), at(time.Hour), time.Time{})}},
			names: []string{"www.lab.test"},
			want:  []PlanEntry{{Name: "www.lab.test", Action: PlanRenew, Expiry: at(89 * day), Reason: "the CA's renewal window (ARI) is open"}},
		},
		{
			name: "an ARI window ahead: ok",
			stored: []stored{{name: "www.lab.test", notBefore: at(-day), notAfter: at(89 * day),
				ari: window(at(50*day), at(52*day), at(51*day))}},
			names: []string{"www.lab.test"},
			want:  []PlanEntry{{Name: "www.lab.test", Action: PlanKeep, Expiry: at(89 * day)}},
		},
		{
			name:   "an unreadable certificate: obtain, saying why",
			stored: []stored{{name: "www.lab.test", corrupt: true}},
			names:  []string{"www.lab.test"},
			want:   []PlanEntry{{Name: "www.lab.test", Action: PlanObtain, Reason: "the stored certificate cannot be read: no PEM certificate"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fs := &certmagic.FileStorage{Path: filepath.Join(dir, "acme")}
			issuerKey := (&certmagic.ACMEIssuer{CA: directory}).IssuerKey()
			for _, s := range tc.stored {
				certPEM := []byte("garbage")
				if !s.corrupt {
					certPEM = selfSigned(t, s.name, s.notBefore, s.notAfter)
				}
				store(t, fs, certmagic.StorageKeys.SiteCert(issuerKey, s.name), certPEM)
				data, _ := json.Marshal(map[string]any{"renewal_info": s.ari})
				meta, _ := json.Marshal(map[string]any{"sans": []string{s.name}, "issuer_data": json.RawMessage(data)})
				store(t, fs, certmagic.StorageKeys.SiteMeta(issuerKey, s.name), meta)
			}
			got, err := PlanACME(dir, directory, tc.names, t0)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
			// Another CA's directory has nothing stored.
			other, _ := PlanACME(dir, "https://other.example.org/dir", tc.names, t0)
			for _, e := range other {
				if e.Action != PlanObtain || strings.Contains(e.Reason, "read") {
					t.Errorf("another CA: %+v, want obtain", e)
				}
			}
		})
	}
}

func store(t *testing.T, fs *certmagic.FileStorage, key string, b []byte) {
	t.Helper()
	if err := fs.Store(context.Background(), key, b); err != nil {
		t.Fatal(err)
	}
}

func selfSigned(t *testing.T, name string, notBefore, notAfter time.Time) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: notBefore, NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
