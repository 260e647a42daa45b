package certs

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// serveTLS runs a TLS server on 127.0.0.1:0 that takes its certificates from
// src, completes each handshake and closes the connection. It stops when the
// test ends.
func serveTLS(t *testing.T, src Source) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: src.GetCertificate, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					c.Read(make([]byte, 1)) // until the client closes
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

func TestIssuerHandshake(t *testing.T) {
	ca := openCA(t, t.TempDir(), time.Now) // the client checks validity against the real clock
	addr := serveTLS(t, ca.Issuer([]string{"app.example.org", "*.wild.example.org", "Mixed.Example.org."}))
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca.RootPEM()) {
		t.Fatal("RootPEM is not a PEM certificate")
	}

	type leafSummary struct {
		DNSNames    []string
		ExtKeyUsage []x509.ExtKeyUsage
		KeyUsage    x509.KeyUsage
		IsCA        bool
		Curve       string
		Lifetime    time.Duration
		Chain       int  // certificates sent by the server
		RootSent    bool // the second one is the root
		Verified    int  // length of the verified chain
	}
	tests := []struct {
		name       string
		serverName string
		want       *leafSummary // nil: the handshake must fail
	}{
		{name: "exact name", serverName: "app.example.org", want: &leafSummary{DNSNames: []string{"app.example.org"}}},
		{name: "upper case", serverName: "APP.Example.ORG", want: &leafSummary{DNSNames: []string{"app.example.org"}}},
		{name: "trailing dot", serverName: "app.example.org.", want: &leafSummary{DNSNames: []string{"app.example.org"}}},
		{name: "configured with capitals and a dot", serverName: "mixed.example.org", want: &leafSummary{DNSNames: []string{"mixed.example.org"}}},
		{name: "wildcard, one label", serverName: "a.wild.example.org", want: &leafSummary{DNSNames: []string{"*.wild.example.org"}}},
		{name: "wildcard, another label", serverName: "b-2.wild.example.org", want: &leafSummary{DNSNames: []string{"*.wild.example.org"}}},
		{name: "wildcard, two labels", serverName: "a.b.wild.example.org"},
		{name: "wildcard apex", serverName: "wild.example.org"},
		{name: "unknown name", serverName: "evil.example.org"},
		{name: "parent of a name", serverName: "example.org"},
		{name: "no SNI", serverName: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &tls.Config{RootCAs: roots, ServerName: tt.serverName}
			if tt.want == nil {
				// Only the server may refuse: the client accepts anything.
				cfg = &tls.Config{InsecureSkipVerify: true, ServerName: tt.serverName}
			}
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
			if tt.want == nil {
				if err == nil {
					conn.Close()
					t.Fatalf("handshake for %q succeeded, want it refused", tt.serverName)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake for %q: %v", tt.serverName, err)
			}
			defer conn.Close()
			st := conn.ConnectionState()
			leaf := st.PeerCertificates[0]
			curve := ""
			if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); ok {
				curve = pub.Curve.Params().Name
			}
			got := &leafSummary{
				DNSNames:    leaf.DNSNames,
				ExtKeyUsage: leaf.ExtKeyUsage,
				KeyUsage:    leaf.KeyUsage,
				IsCA:        leaf.IsCA,
				Curve:       curve,
				Lifetime:    leaf.NotAfter.Sub(leaf.NotBefore),
				Chain:       len(st.PeerCertificates),
				RootSent:    len(st.PeerCertificates) == 2 && st.PeerCertificates[1].Equal(ca.Root()),
			}
			if len(st.VerifiedChains) > 0 {
				got.Verified = len(st.VerifiedChains[0])
			}
			want := *tt.want
			want.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			want.KeyUsage = x509.KeyUsageDigitalSignature
			want.Curve = "P-256"
			want.Lifetime = 7*24*time.Hour + time.Minute // backdated one minute
			want.Chain, want.RootSent, want.Verified = 2, true, 2
			if diff := cmp.Diff(&want, got); diff != "" {
				t.Errorf("leaf (-want +got):\n%s", diff)
			}
			if n := leaf.SerialNumber; n.Sign() <= 0 || n.BitLen() > 128 {
				t.Errorf("serial %v is not a positive 128-bit number", n)
			}
		})
	}
}

// get asks src for the certificate of serverName, as a handshake would.
func get(t *testing.T, src Source, serverName string) *tls.Certificate {
	t.Helper()
	c, err := src.GetCertificate(&tls.ClientHelloInfo{ServerName: serverName})
	if err != nil {
		t.Fatalf("GetCertificate(%q): %v", serverName, err)
	}
	return c
}

func TestIssuerLeafFields(t *testing.T) {
	ca := openCA(t, t.TempDir(), newClock(t0).Now)
	c := get(t, ca.Issuer([]string{"app.example.org"}), "app.example.org")
	if c.Leaf == nil {
		t.Fatal("Leaf is not set")
	}
	if diff := cmp.Diff([][]byte{c.Leaf.Raw, ca.Root().Raw}, c.Certificate); diff != "" {
		t.Errorf("chain is not leaf + root (-want +got):\n%s", diff)
	}
	if _, ok := c.PrivateKey.(*ecdsa.PrivateKey); !ok {
		t.Errorf("private key is %T, want *ecdsa.PrivateKey", c.PrivateKey)
	}
	if err := c.Leaf.CheckSignatureFrom(ca.Root()); err != nil {
		t.Errorf("leaf is not signed by the root: %v", err)
	}
	if diff := cmp.Diff(ca.Root().SubjectKeyId, c.Leaf.AuthorityKeyId); diff != "" {
		t.Errorf("AuthorityKeyId (-root SKI +leaf AKI):\n%s", diff)
	}
}

func TestIssuerRefusesUnknownNames(t *testing.T) {
	ca := openCA(t, t.TempDir(), newClock(t0).Now)
	is := ca.Issuer([]string{"app.example.org", "*.wild.example.org"})
	tests := []struct {
		serverName string
		wantText   string
	}{
		{"", "no server name"},
		{".", "no server name"},
		{"other.example.org", `"other.example.org"`},
		{"a.b.wild.example.org", "not a configured host"},
		{"wild.example.org", "not a configured host"},
		{".wild.example.org", "not a configured host"},
		{"app.example.org.evil", "not a configured host"},
	}
	for _, tt := range tests {
		t.Run(tt.serverName, func(t *testing.T) {
			c, err := is.GetCertificate(&tls.ClientHelloInfo{ServerName: tt.serverName})
			if err == nil {
				t.Fatalf("GetCertificate(%q) served %v, want an error", tt.serverName, c.Leaf.DNSNames)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not say %q", err, tt.wantText)
			}
		})
	}
	if n := is.(*issuer).issued.Load(); n != 0 {
		t.Errorf("%d certificates issued for refused names", n)
	}
}

func TestIssuerReissuesAfterTwoThirds(t *testing.T) {
	clk := newClock(t0)
	ca := openCA(t, t.TempDir(), clk.Now)
	src := ca.Issuer([]string{"app.example.org"})
	is := src.(*issuer)
	first := get(t, src, "app.example.org")

	twoThirds := 7 * 24 * time.Hour * 2 / 3 // 112h
	steps := []struct {
		name       string
		at         time.Duration // after t0
		wantNew    bool          // a new leaf compared with the previous step
		wantIssued int64
	}{
		{name: "a second later", at: time.Second, wantIssued: 1},
		{name: "4 days later", at: 96 * time.Hour, wantIssued: 1},
		{name: "just before 2/3", at: twoThirds - time.Second, wantIssued: 1},
		{name: "at 2/3", at: twoThirds, wantNew: true, wantIssued: 2},
		{name: "right after re-issue", at: twoThirds + time.Minute, wantIssued: 2},
		{name: "2/3 of the second leaf", at: 2 * twoThirds, wantNew: true, wantIssued: 3},
	}
	prev := first
	for _, s := range steps {
		clk.Set(t0.Add(s.at))
		got := get(t, src, "app.example.org")
		if isNew := got != prev; isNew != s.wantNew {
			t.Errorf("%s: new leaf = %v, want %v", s.name, isNew, s.wantNew)
		}
		if s.wantNew {
			if got.Leaf.SerialNumber.Cmp(prev.Leaf.SerialNumber) == 0 {
				t.Errorf("%s: re-issued leaf reuses serial %v", s.name, got.Leaf.SerialNumber)
			}
			if want := t0.Add(s.at).Add(7 * 24 * time.Hour); !got.Leaf.NotAfter.Equal(want) {
				t.Errorf("%s: NotAfter = %v, want %v", s.name, got.Leaf.NotAfter, want)
			}
		}
		if n := is.issued.Load(); n != s.wantIssued {
			t.Errorf("%s: %d issued, want %d", s.name, n, s.wantIssued)
		}
		prev = got
	}
}

func TestIssuerNearRootExpiry(t *testing.T) {
	clk := newClock(t0)
	ca := openCA(t, t.TempDir(), clk.Now)
	src := ca.Issuer([]string{"app.example.org"})
	rootEnd := ca.Root().NotAfter

	// Two days before the root expires, a leaf ends with the root.
	clk.Set(rootEnd.Add(-48 * time.Hour))
	c := get(t, src, "app.example.org")
	if !c.Leaf.NotAfter.Equal(rootEnd) {
		t.Errorf("leaf NotAfter = %v, want the root's %v", c.Leaf.NotAfter, rootEnd)
	}

	// Once the root has expired nothing can be issued, and the error says why.
	clk.Set(rootEnd.Add(time.Hour))
	_, err := src.GetCertificate(&tls.ClientHelloInfo{ServerName: "app.example.org"})
	if err == nil || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), ca.RootPath()) {
		t.Errorf("after root expiry: error %v, want one saying %s expired", err, ca.RootPath())
	}
}

func TestIssuerConcurrentFirstUseIssuesOnce(t *testing.T) {
	tests := []struct {
		name       string
		serverName []string // asked for in turn by the goroutines
		wantIssued int64
	}{
		{name: "one name", serverName: []string{"app.example.org"}, wantIssued: 1},
		{name: "one wildcard, many names", serverName: []string{"a.wild.example.org", "b.wild.example.org", "C.Wild.example.org."}, wantIssued: 1},
		{name: "three names", serverName: []string{"app.example.org", "db.example.org", "x.wild.example.org"}, wantIssued: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca := openCA(t, t.TempDir(), newClock(t0).Now)
			src := ca.Issuer([]string{"app.example.org", "db.example.org", "*.wild.example.org"})
			const n = 64
			got := make([]*tls.Certificate, n)
			errs := make([]error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					<-start
					got[i], errs[i] = src.GetCertificate(&tls.ClientHelloInfo{ServerName: tt.serverName[i%len(tt.serverName)]})
				})
			}
			close(start)
			wg.Wait()
			byName := map[string]*tls.Certificate{}
			for i := range n {
				if errs[i] != nil {
					t.Fatalf("GetCertificate: %v", errs[i])
				}
				name := got[i].Leaf.DNSNames[0]
				if prev, ok := byName[name]; ok && prev != got[i] {
					t.Errorf("two different leaves served for %s", name)
				}
				byName[name] = got[i]
			}
			if n := src.(*issuer).issued.Load(); n != tt.wantIssued {
				t.Errorf("%d certificates issued, want %d", n, tt.wantIssued)
			}
		})
	}
}

func TestNames(t *testing.T) {
	n := newNames()
	for _, s := range []string{"app.example.org", "*.wild.example.org", "Upper.Example.ORG.", "", "*.app.example.org"} {
		n.add(s)
	}
	tests := []struct {
		sni    string
		want   string
		wantOK bool
	}{
		{"app.example.org", "app.example.org", true},
		{"APP.EXAMPLE.ORG", "app.example.org", true},
		{"app.example.org.", "app.example.org", true},
		{"upper.example.org", "upper.example.org", true},
		{"x.wild.example.org", "*.wild.example.org", true},
		{"X.Wild.Example.Org.", "*.wild.example.org", true},
		{"x.app.example.org", "*.app.example.org", true}, // a name and a wildcard below it
		{"x.y.wild.example.org", "", false},
		{"wild.example.org", "", false},
		{".wild.example.org", "", false},
		{"example.org", "", false},
		{"org", "", false},
		{"", "", false},
		{".", "", false},
		{"app.example.org..", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.sni, func(t *testing.T) {
			got, ok := n.match(tt.sni)
			if diff := cmp.Diff(struct {
				Name string
				OK   bool
			}{tt.want, tt.wantOK}, struct {
				Name string
				OK   bool
			}{got, ok}); diff != "" {
				t.Errorf("match(%q) (-want +got):\n%s", tt.sni, diff)
			}
		})
	}
}

func FuzzNamesMatch(f *testing.F) {
	for _, s := range []string{"app.example.org", "a.wild.example.org", "a.b.wild.example.org", "WILD.example.org.", "", ".", "..", "*.wild.example.org"} {
		f.Add(s)
	}
	n := newNames()
	n.add("app.example.org")
	n.add("*.wild.example.org")
	f.Fuzz(func(t *testing.T, sni string) {
		name, ok := n.match(sni)
		if !ok {
			return
		}
		host := normalize(sni)
		switch name {
		case "app.example.org":
			if host != name {
				t.Errorf("%q matched %q", sni, name)
			}
		case "*.wild.example.org":
			label, ok := strings.CutSuffix(host, ".wild.example.org")
			if !ok || label == "" || strings.Contains(label, ".") {
				t.Errorf("%q matched %q", sni, name)
			}
		default:
			t.Errorf("%q matched unconfigured %q", sni, name)
		}
	})
}

// Expiry reports the leaf served for a name once it was issued.
func TestIssuerExpiry(t *testing.T) {
	ca := openCA(t, t.TempDir(), time.Now)
	src := ca.Issuer([]string{"app.example.org", "*.wild.example.org"})
	ex := src.(interface {
		Expiry(string) (time.Time, bool)
	})
	if _, ok := ex.Expiry("app.example.org"); ok {
		t.Error("an expiry before any handshake")
	}
	var wildcard time.Time
	for _, name := range []string{"app.example.org", "a.wild.example.org"} {
		cert, err := src.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
		if err != nil {
			t.Fatal(err)
		}
		got, ok := ex.Expiry(name)
		if !ok || !got.Equal(cert.Leaf.NotAfter) {
			t.Errorf("%s: expiry %v %v, want %v", name, got, ok, cert.Leaf.NotAfter)
		}
		wildcard = cert.Leaf.NotAfter
	}
	if got, ok := ex.Expiry("b.wild.example.org"); !ok || !got.Equal(wildcard) {
		t.Errorf("another name under the wildcard: expiry %v %v, want the wildcard's %v", got, ok, wildcard)
	}
	if _, ok := ex.Expiry("evil.example.org"); ok {
		t.Error("an expiry for a name the source does not serve")
	}
}
