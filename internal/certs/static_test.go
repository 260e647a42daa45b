package certs

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestStatic(t *testing.T) {
	ca := openCA(t, t.TempDir(), newClock(t0).Now)
	issue := func(name string) *tls.Certificate {
		t.Helper()
		c, _, err := ca.issue(name)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	app := issue("app.example.org")
	wild := issue("*.wild.example.org")
	noLeaf := issue("db.example.org")
	noLeaf.Leaf = nil // parsed from the chain instead

	s, err := NewStatic(app, wild, noLeaf)
	if err != nil {
		t.Fatalf("NewStatic: %v", err)
	}
	tests := []struct {
		serverName string
		want       *tls.Certificate // nil: refused
	}{
		{"app.example.org", app},
		{"App.Example.Org.", app},
		{"db.example.org", noLeaf},
		{"x.wild.example.org", wild},
		{"x.y.wild.example.org", nil},
		{"wild.example.org", nil},
		{"other.example.org", nil},
		{"", nil},
	}
	for _, tt := range tests {
		t.Run(tt.serverName, func(t *testing.T) {
			got, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: tt.serverName})
			if tt.want == nil {
				if err == nil {
					t.Fatalf("served %v, want an error", got.Certificate[0][:8])
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("served the wrong certificate")
			}
		})
	}
}

func TestNewStaticErrors(t *testing.T) {
	ca := openCA(t, t.TempDir(), newClock(t0).Now)
	a1, _, err := ca.issue("app.example.org")
	if err != nil {
		t.Fatal(err)
	}
	a2, _, err := ca.issue("app.example.org")
	if err != nil {
		t.Fatal(err)
	}
	root := &tls.Certificate{Certificate: [][]byte{ca.Root().Raw}}
	tests := []struct {
		name     string
		certs    []*tls.Certificate
		wantText string
	}{
		{name: "two certificates for one name", certs: []*tls.Certificate{a1, a2}, wantText: "certificate 1: app.example.org is already served"},
		{name: "no DNS names", certs: []*tls.Certificate{root}, wantText: "certificate 0 (CN=labgate internal CA"},
		{name: "empty chain", certs: []*tls.Certificate{{}}, wantText: "certificate 0: empty chain"},
		{name: "garbage DER", certs: []*tls.Certificate{{Certificate: [][]byte{[]byte("x")}}}, wantText: "certificate 0: x509:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewStatic(tt.certs...)
			if err == nil || !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("NewStatic: error %v, want one containing %q", err, tt.wantText)
			}
		})
	}
}

func TestWriteNewNeverReplaces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "root.key")
	if err := writeNew(p, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeNew(p, []byte("second"), 0o600); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("second write: error %v, want one naming %s", err, p)
	}
	if diff := cmp.Diff(map[string]string{"root.key": "first"}, readDir(t, dir)); diff != "" {
		t.Errorf("directory after writes (-want +got):\n%s", diff)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
}
