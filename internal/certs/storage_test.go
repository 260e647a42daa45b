package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/statefile/damage"
)

// writeStorage writes ACME storage as certmagic lays it out: one
// certificate (leaf and intermediate) and one account.
func writeStorage(t *testing.T, root string) map[string]string {
	t.Helper()
	ecKey := func() (*ecdsa.PrivateKey, []byte) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, _ := x509.MarshalECPrivateKey(k)
		return k, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	caKey, _ := ecKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "intermediate"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	leafKey, leafKeyPEM := ecKey()
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), DNSNames: []string{"www.lab.test"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}, caTmpl, leafKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})...)
	_, acctKey := ecKey()
	cert := "certificates/ca.example-directory/www.lab.test/www.lab.test"
	acct := "acme/ca.example-directory/users/me@lab.test/me"
	files := map[string]string{
		cert + ".crt":  string(chain),
		cert + ".key":  string(leafKeyPEM),
		cert + ".json": `{"sans":["www.lab.test"],"issuer_data":{}}`,
		acct + ".key":  string(acctKey),
		acct + ".json": `{"status":"valid","contact":["mailto:me@lab.test"],"location":"https://ca.example/acct/1"}`,
	}
	for name, data := range files {
		path := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

func TestCheckStorage(t *testing.T) {
	good := t.TempDir()
	files := writeStorage(t, good)
	if got := checkStorage(good, time.Now()); len(got) != 0 {
		t.Fatalf("whole storage found damaged: %v", got)
	}
	now := time.Date(2026, 11, 26, 2, 3, 4, 0, time.UTC)
	for name, orig := range files {
		for how, data := range damage.File([]byte(orig)) {
			t.Run(filepath.Base(name)+"/"+how, func(t *testing.T) {
				root := t.TempDir()
				if err := os.CopyFS(root, os.DirFS(good)); err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(root, filepath.FromSlash(name))
				if err := os.WriteFile(path, data, 0o600); err != nil {
					t.Fatal(err)
				}
				got := checkStorage(root, now)
				if len(got) != 1 || got[0].Path != path || got[0].Err == nil {
					t.Fatalf("found %+v, want %s", got, path)
				}
				if strings.HasPrefix(name, "acme/") { // the account: kept
					if got[0].Aside != "" {
						t.Errorf("the account was moved to %s", got[0].Aside)
					}
					if b, _ := os.ReadFile(path); !bytes.Equal(b, data) {
						t.Error("the account file was changed")
					}
					if a := got[0].Advice(); !strings.Contains(a, "Restore "+filepath.Dir(path)+" from a backup") || !strings.Contains(a, "move it aside") {
						t.Errorf("advice: %s", a)
					}
					return
				}
				want := filepath.Dir(path) + ".damaged-20261126T020304Z"
				if got[0].Aside != want {
					t.Errorf("moved to %q, want %q", got[0].Aside, want)
				}
				if b, _ := os.ReadFile(filepath.Join(want, filepath.Base(path))); !bytes.Equal(b, data) {
					t.Error("the damaged copy is not kept as it was")
				}
				if _, err := os.Stat(filepath.Dir(path)); !os.IsNotExist(err) {
					t.Errorf("the certificate's directory is still in place: %v", err)
				}
				// The next start looks past the copy aside.
				if again := checkStorage(root, now); len(again) != 0 {
					t.Errorf("found again: %v", again)
				}
			})
		}
	}
}

// A key that parses but is not the certificate's: a power loss between
// writing a renewed certificate and its new key leaves the old key beside
// the new certificate. TLS with it fails, so it is damage like any other.
func TestCheckStorageKeyMismatch(t *testing.T) {
	root := t.TempDir()
	files := writeStorage(t, root)
	other := t.TempDir()
	otherFiles := writeStorage(t, other) // another key of the same shape
	const key = "certificates/ca.example-directory/www.lab.test/www.lab.test.key"
	if files[key] == otherFiles[key] {
		t.Fatal("the same key twice")
	}
	path := filepath.Join(root, filepath.FromSlash(key))
	if err := os.WriteFile(path, []byte(otherFiles[key]), 0o600); err != nil {
		t.Fatal(err)
	}
	got := checkStorage(root, time.Now())
	if len(got) != 1 || got[0].Path != path || got[0].Aside == "" || !strings.Contains(got[0].Err.Error(), "does not match") {
		t.Fatalf("found %+v, want %s moved aside: the key does not match", got, path)
	}
}
