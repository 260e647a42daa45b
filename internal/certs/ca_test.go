package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	code := pebbleLab.Run(m) // stops pebble: idle connections to it end
	ariLab.Stop()
	if code == 0 {
		// certmagic keeps process-wide goroutines (rate limiters, job queues).
		if err := goleak.Find(certmagicGoroutines...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// t0 is the tests' "now".
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable clock for injecting into OpenCA.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func openCA(t *testing.T, dir string, now func() time.Time) *CA {
	t.Helper()
	ca, err := OpenCA(dir, now)
	if err != nil {
		t.Fatalf("OpenCA: %v", err)
	}
	return ca
}

func TestOpenCACreatesThenLoads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "ca")
	ca := openCA(t, dir, newClock(t0).Now)

	host, _ := os.Hostname()
	type rootSummary struct {
		CommonName                  string
		IsCA, MaxPathLenZero        bool
		MaxPathLen                  int
		KeyUsage                    x509.KeyUsage
		NotBefore, NotAfter         time.Time
		Curve                       string
		SelfSigned, HasSubjectKeyID bool
		CertMode, KeyMode           os.FileMode
		CertPEMType, KeyPEMType     string
		RootPath                    string
	}
	summarize := func(ca *CA) rootSummary {
		r := ca.Root()
		certFile, err := os.Stat(filepath.Join(dir, "root.crt"))
		if err != nil {
			t.Fatal(err)
		}
		keyFile, err := os.Stat(filepath.Join(dir, "root.key"))
		if err != nil {
			t.Fatal(err)
		}
		certPEM, _ := pem.Decode(ca.RootPEM())
		keyBytes, err := os.ReadFile(filepath.Join(dir, "root.key"))
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, _ := pem.Decode(keyBytes)
		pub, _ := r.PublicKey.(*ecdsa.PublicKey)
		curve := ""
		if pub != nil {
			curve = pub.Curve.Params().Name
		}
		return rootSummary{
			CommonName:      r.Subject.CommonName,
			IsCA:            r.IsCA,
			MaxPathLenZero:  r.MaxPathLenZero,
			MaxPathLen:      r.MaxPathLen,
			KeyUsage:        r.KeyUsage,
			NotBefore:       r.NotBefore,
			NotAfter:        r.NotAfter,
			Curve:           curve,
			SelfSigned:      r.CheckSignatureFrom(r) == nil,
			HasSubjectKeyID: len(r.SubjectKeyId) > 0,
			CertMode:        certFile.Mode().Perm(),
			KeyMode:         keyFile.Mode().Perm(),
			CertPEMType:     certPEM.Type,
			KeyPEMType:      keyPEM.Type,
			RootPath:        ca.RootPath(),
		}
	}
	want := rootSummary{
		CommonName:      "labgate internal CA (" + host + ")",
		IsCA:            true,
		MaxPathLenZero:  true,
		MaxPathLen:      0,
		KeyUsage:        x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		NotBefore:       t0.Add(-time.Minute),
		NotAfter:        t0.Add(10 * 365 * 24 * time.Hour),
		Curve:           "P-256",
		SelfSigned:      true,
		HasSubjectKeyID: true,
		CertMode:        0o644,
		KeyMode:         0o600,
		CertPEMType:     "CERTIFICATE",
		KeyPEMType:      "PRIVATE KEY",
		RootPath:        filepath.Join(dir, "root.crt"),
	}
	if diff := cmp.Diff(want, summarize(ca)); diff != "" {
		t.Errorf("created root (-want +got):\n%s", diff)
	}
	onDisk, err := os.ReadFile(ca.RootPath())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(onDisk), string(ca.RootPEM())); diff != "" {
		t.Errorf("RootPEM differs from root.crt (-file +RootPEM):\n%s", diff)
	}
	keyBefore, err := os.ReadFile(filepath.Join(dir, "root.key"))
	if err != nil {
		t.Fatal(err)
	}

	// A year later the same pair is loaded, not replaced.
	again := openCA(t, dir, newClock(t0.AddDate(1, 0, 0)).Now)
	if diff := cmp.Diff(want, summarize(again)); diff != "" {
		t.Errorf("loaded root (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(string(ca.RootPEM()), string(again.RootPEM())); diff != "" {
		t.Errorf("RootPEM changed on load (-created +loaded):\n%s", diff)
	}
	if !again.key.Equal(ca.key) {
		t.Error("loaded key differs from the created one")
	}
	keyAfter, err := os.ReadFile(filepath.Join(dir, "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	if string(keyBefore) != string(keyAfter) {
		t.Error("root.key was rewritten on load")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		files = append(files, e.Name())
	}
	if diff := cmp.Diff([]string{"root.crt", "root.key"}, files); diff != "" {
		t.Errorf("files in the CA directory (-want +got):\n%s", diff)
	}
}

func TestOpenCARejectsBadState(t *testing.T) {
	other := openCA(t, t.TempDir(), newClock(t0).Now)
	otherKey, err := os.ReadFile(filepath.Join(other.dir, "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _, err := other.issue("app.example.org")
	if err != nil {
		t.Fatal(err)
	}
	leafPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Leaf.Raw})
	sec1 := func() []byte {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}()

	tests := []struct {
		name     string
		file     string // file to overwrite, or remove when content is nil
		content  []byte
		now      time.Time
		wantPath string // the error must name this file
		wantText string
	}{
		{name: "garbage root.crt", file: "root.crt", content: []byte("hello\n"), wantPath: "root.crt", wantText: "not a PEM certificate"},
		{name: "truncated root.crt", file: "root.crt", content: []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), wantPath: "root.crt"},
		{name: "garbage root.key", file: "root.key", content: []byte("{}"), wantPath: "root.key", wantText: "not a PEM PKCS#8 private key"},
		{name: "SEC1 root.key", file: "root.key", content: sec1, wantPath: "root.key"},
		{name: "empty root.key", file: "root.key", content: []byte{}, wantPath: "root.key"},
		{name: "key of another CA", file: "root.key", content: otherKey, wantPath: "root.key", wantText: "does not match"},
		{name: "leaf instead of root", file: "root.crt", content: leafPEM, wantPath: "root.crt", wantText: "not a CA certificate"},
		{name: "root.crt missing", file: "root.crt", wantPath: "root.crt", wantText: "missing"},
		{name: "root.key missing", file: "root.key", wantPath: "root.key", wantText: "missing"},
		{name: "root expired", now: t0.AddDate(11, 0, 0), wantPath: "root.crt", wantText: "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			openCA(t, dir, newClock(t0).Now)
			if tt.file != "" {
				p := filepath.Join(dir, tt.file)
				if tt.content == nil {
					if err := os.Remove(p); err != nil {
						t.Fatal(err)
					}
				} else if err := os.WriteFile(p, tt.content, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			before := readDir(t, dir)
			now := tt.now
			if now.IsZero() {
				now = t0.Add(time.Hour)
			}
			ca, err := OpenCA(dir, newClock(now).Now)
			if err == nil {
				t.Fatalf("OpenCA succeeded (root %s), want an error", ca.Root().Subject)
			}
			if want := filepath.Join(dir, tt.wantPath); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %s", err, want)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not say %q", err, tt.wantText)
			}
			if diff := cmp.Diff(before, readDir(t, dir)); diff != "" {
				t.Errorf("OpenCA changed the CA directory (-before +after):\n%s", diff)
			}
		})
	}
}

// readDir returns the names and contents of the files in dir.
func readDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

func TestTrustHint(t *testing.T) {
	tests := []struct {
		name string
		sub  string
		want []string
	}{
		{name: "plain path", sub: "ca", want: []string{"curl --cacert /", "/ca/root.crt ", "update-ca-certificates"}},
		{name: "path with a space", sub: "my ca", want: []string{"curl --cacert '/", "/my ca/root.crt' ", "sudo cp '/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca := openCA(t, filepath.Join(t.TempDir(), tt.sub), newClock(t0).Now)
			hint := ca.TrustHint()
			if strings.Contains(hint, "\n") {
				t.Errorf("hint spans lines: %q", hint)
			}
			for _, w := range tt.want {
				if !strings.Contains(hint, w) {
					t.Errorf("hint %q lacks %q", hint, w)
				}
			}
		})
	}
}

// certmagicGoroutines are process-wide goroutines certmagic keeps.
var certmagicGoroutines = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
	goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.(*RingBufferRateLimiter).loop"),
}
