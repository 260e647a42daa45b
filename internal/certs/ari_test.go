package certs

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/labgate/labgate/internal/testacme"
)

// ariLab is pebble 2.10 (built from the Go module proxy), which answers ARI.
var ariLab testacme.Shared

// TestACMERenewsAtARIWindow: a certificate far from expiry is renewed once
// the CA's renewal window (ARI) has opened, and the new order names the
// certificate it replaces.
func TestACMERenewsAtARIWindow(t *testing.T) {
	if ariLab.Options.Binary == "" {
		ariLab.Options.Binary = testacme.Pebble210(t)
	}
	p := ariLab.Pebble(t)
	dir := t.TempDir()
	roots := p.Roots(t)
	const name = "ari.lab.test"

	e := newACMEEnv(t, p, dir, http01)
	e.manage(name)
	e.waitEvents(Obtained, 1)
	first := e.waitServed(name, roots)
	e.close()

	// Six hours later (pebble's Retry-After), the CA says: renew now.
	certPEM, err := os.ReadFile(filepath.Join(dir, "acme", certmagic.StorageKeys.SiteCert((&certmagic.ACMEIssuer{CA: p.Directory}).IssuerKey(), name)))
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour).UTC()
	p.SetRenewalInfo(t, certPEM, fmt.Sprintf(`{"suggestedWindow":{"start":%q,"end":%q}}`,
		past.Format(time.RFC3339), past.Add(time.Minute).Format(time.RFC3339)))
	ageStoredARI(t, filepath.Join(dir, "acme", certmagic.StorageKeys.SiteMeta((&certmagic.ACMEIssuer{CA: p.Directory}).IssuerKey(), name)))

	plan, err := PlanACME(dir, p.Directory, []string{name}, time.Now())
	if err != nil || len(plan) != 1 || plan[0].Action != PlanKeep {
		t.Errorf("plan before the ARI update = %+v, %v; want ok (the stored window is still the old one)", plan, err)
	}

	orders := len(p.Orders())
	e2 := newACMEEnv(t, p, dir, http01)
	e2.manage(name)
	evs := e2.waitEvents(Renewed, 1)
	if evs[0].Name != name {
		t.Errorf("renewed %q", evs[0].Name)
	}
	// The renewed certificate replaces the old one in memory right after the event.
	second := e2.waitServed(name, roots)
	for deadline := time.Now().Add(10 * time.Second); second.Equal(first); second = e2.waitServed(name, roots) {
		if time.Now().After(deadline) {
			t.Fatal("still serving the old certificate")
		}
		time.Sleep(20 * time.Millisecond)
	}
	all := p.Orders()
	if len(all) != orders+1 {
		t.Fatalf("%d new orders, want 1", len(all)-orders)
	}
	replaces, _ := all[len(all)-1]["replaces"].(string)
	if want := ariCertID(t, first.AuthorityKeyId, first.SerialNumber.Bytes()); replaces != want {
		t.Errorf("the renewal order replaces %q, want %q (the old certificate's ARI id)", replaces, want)
	}
}

// ageStoredARI moves the stored ARI's next update into the past, as if
// pebble's Retry-After (6 h) had passed.
func ageStoredARI(t *testing.T, metaFile string) {
	t.Helper()
	b, err := os.ReadFile(metaFile)
	if err != nil {
		t.Fatal(err)
	}
	var meta map[string]any
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	issuer, _ := meta["issuer_data"].(map[string]any)
	ari, _ := issuer["renewal_info"].(map[string]any)
	if ari == nil {
		t.Fatalf("no ARI stored with the certificate: %s", b)
	}
	ari["_retryAfter"] = time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	b, _ = json.Marshal(meta)
	if err := os.WriteFile(metaFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// ariCertID is RFC 9773's certificate identifier: base64url(AKI) "."
// base64url(DER serial number, with its leading zero byte if any).
func ariCertID(t *testing.T, aki, serial []byte) string {
	t.Helper()
	if len(serial) > 0 && serial[0]&0x80 != 0 {
		serial = append([]byte{0}, serial...)
	}
	return base64.RawURLEncoding.EncodeToString(aki) + "." + base64.RawURLEncoding.EncodeToString(serial)
}
