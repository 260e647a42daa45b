package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/labgate/labgate/internal/statefile"
)

const (
	rootCertFile = "root.crt"
	rootKeyFile  = "root.key"

	// rootLifetime is how long a new root is valid.
	rootLifetime = 10 * 365 * 24 * time.Hour
	// backdate moves NotBefore into the past so clients whose clocks are a
	// little behind still accept a certificate issued a moment ago.
	backdate = time.Minute
)

// CA is labgate's internal certificate authority. Its root pair is kept in
// one directory (state_dir/ca):
//
//	root.crt  PEM certificate, mode 0644: the file devices trust
//	root.key  PEM PKCS#8 ECDSA P-256 private key, mode 0600
//
// A CA is immutable after [OpenCA] and safe for concurrent use.
type CA struct {
	dir     string
	now     func() time.Time
	root    *x509.Certificate
	rootPEM []byte
	key     *ecdsa.PrivateKey
}

// OpenCA loads the CA kept in dir, creating dir and a new root pair when
// neither root.crt nor root.key exists. An existing pair is never replaced: a
// corrupt file, a missing half, a key that does not match the certificate or
// an expired root is an error naming the file. now is the clock used for
// validity periods (time.Now in production).
func OpenCA(dir string, now func() time.Time) (*CA, error) {
	ca := &CA{dir: dir, now: now}
	certPath, keyPath := ca.RootPath(), filepath.Join(dir, rootKeyFile)
	certOK, err := exists(certPath)
	if err != nil {
		return nil, err
	}
	keyOK, err := exists(keyPath)
	if err != nil {
		return nil, err
	}
	switch {
	case !certOK && !keyOK:
		if err := ca.create(certPath, keyPath); err != nil {
			return nil, err
		}
	case !certOK:
		return nil, fmt.Errorf("%s is missing but %s exists; restore it, or move %s aside to create a new CA (devices must then trust the new root)", certPath, keyPath, dir)
	case !keyOK:
		return nil, fmt.Errorf("%s is missing but %s exists; restore it, or move %s aside to create a new CA (devices must then trust the new root)", keyPath, certPath, dir)
	}
	if err := ca.load(certPath, keyPath); err != nil {
		return nil, err
	}
	return ca, nil
}

// RootPath is the path of the root certificate, the file devices should trust.
func (ca *CA) RootPath() string { return filepath.Join(ca.dir, rootCertFile) }

// RootPEM is the root certificate, PEM-encoded.
func (ca *CA) RootPEM() []byte { return bytes.Clone(ca.rootPEM) }

// Root is the parsed root certificate. Callers must not modify it.
func (ca *CA) Root() *x509.Certificate { return ca.root }

// TrustHint is a one-line hint on how to make clients trust the root.
func (ca *CA) TrustHint() string {
	p := shellQuote(ca.RootPath())
	return "to trust labgate's internal CA: curl --cacert " + p + " https://<host>/, " +
		"or on Debian/Ubuntu: sudo cp " + p + " /usr/local/share/ca-certificates/labgate.crt && sudo update-ca-certificates"
}

// create makes a new root pair and writes it to certPath and keyPath without
// overwriting anything already there.
func (ca *CA) create(certPath, keyPath string) error {
	if err := os.MkdirAll(ca.dir, 0o755); err != nil {
		return fmt.Errorf("creating the internal CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("creating the internal CA: generating the root key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return fmt.Errorf("creating the internal CA: %w", err)
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown host"
	}
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("labgate internal CA (%s)", host), Organization: []string{"labgate"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(rootLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return fmt.Errorf("creating the internal CA: signing the root: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("creating the internal CA: encoding the root key: %w", err)
	}
	// The key goes first: a crash in between leaves a key without a
	// certificate, which OpenCA reports instead of silently replacing.
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeNew(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// load reads and checks the root pair.
func (ca *CA) load(certPath, keyPath string) error {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return fmt.Errorf("%s: not a PEM certificate", certPath)
	}
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("%s: %w", certPath, err)
	}
	if !root.IsCA || !root.BasicConstraintsValid || root.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%s: not a CA certificate", certPath)
	}
	if now := ca.now(); !now.Before(root.NotAfter) {
		return fmt.Errorf("%s: the internal CA's root expired on %s; move %s aside to create a new CA (devices must then trust the new root)",
			certPath, root.NotAfter.UTC().Format(time.DateOnly), ca.dir)
	}

	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return err
	}
	block, _ = pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		return fmt.Errorf("%s: not a PEM PKCS#8 private key", keyPath)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return fmt.Errorf("%s: %w", keyPath, err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return fmt.Errorf("%s: not an ECDSA P-256 key", keyPath)
	}
	if !key.PublicKey.Equal(root.PublicKey) {
		return fmt.Errorf("%s does not belong to %s (the key does not match the certificate)", keyPath, certPath)
	}
	ca.root = root
	ca.rootPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})
	ca.key = key
	return nil
}

// exists reports whether path exists; errors other than "not found" (such as
// permission denied) are returned.
func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

// writeNew is statefile.WriteNew with the path in its error.
func writeNew(path string, data []byte, perm fs.FileMode) error {
	if err := statefile.WriteNew(path, data, perm); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// randomSerial is a random positive 128-bit serial number.
func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generating a serial number: %w", err)
	}
	if n.Sign() == 0 {
		n.SetInt64(1)
	}
	return n, nil
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:@,=") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
