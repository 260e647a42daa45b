package certs

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/labgate/labgate/internal/statefile"
)

// Damaged ACME storage (state_dir/acme), looked at by NewACME before
// certmagic reads any of it. certmagic serves nothing for a name whose
// files it cannot load, never obtains a new certificate for it, and serves
// a certificate whose chain was cut short as it is; with a damaged account
// no certificate can be obtained or renewed.
//
//   - A certificate (its .crt, .key and .json, one directory per name) is
//     worth nothing that a new order does not give back: a damaged one is
//     moved aside, never deleted, and obtained again, once: a single order
//     is far from any CA's rate limit.
//   - The account (users/<email>/) is the CA's record of who labgate is:
//     it is never replaced behind the user's back. Certificates in storage
//     go on being served until they expire, none are obtained or renewed,
//     and StorageDamage says how to restore it or start a new account.

// StorageDamage is a damaged part of ACME storage.
type StorageDamage struct {
	Path  string // the damaged file
	Err   error  // what is wrong with it
	Aside string // where its certificate's directory was moved; "" when kept (an account, an unreadable file)
	// Unreadable: labgate may not read the file (its owner or mode); it
	// says nothing of the content, and the file is kept where it is.
	Unreadable bool
}

// Advice says what the damage means and what to do, for the log and for
// an alert.
func (d StorageDamage) Advice() string {
	if d.Unreadable {
		return fmt.Sprintf("labgate may not read %s (its owner or mode; a state_dir restored or used as another user?): it is left as it is, and the name or account it belongs to gets no certificate until the user labgate runs as can read it and labgate restarts.", d.Path)
	}
	if d.Aside != "" {
		return fmt.Sprintf("The certificate's files were moved aside to %s and a new certificate is obtained from the CA (one order).", d.Aside)
	}
	users := filepath.Dir(d.Path)
	return fmt.Sprintf("This is labgate's ACME account: certificates in storage are served until they expire, but none can be obtained or renewed. "+
		"Restore %s from a backup, or move it aside for labgate to register a new account at the next start (certificates already issued stay valid).", users)
}

// StorageDamage lists what NewACME found damaged in storage.
func (a *ACME) StorageDamage() []StorageDamage { return a.damage }

// checkStorage looks at every certificate and account in the storage at
// root, moves damaged certificates aside and reports what it found.
func checkStorage(root string, now time.Time) []StorageDamage {
	var out []StorageDamage
	certDirs, _ := filepath.Glob(filepath.Join(root, "certificates", "*", "*"))
	for _, dir := range certDirs {
		if statefile.IsAside(filepath.Base(dir)) {
			continue
		}
		file, err := checkCertDir(dir)
		if err == nil {
			continue
		}
		d := StorageDamage{Path: file, Err: err}
		if errors.Is(err, fs.ErrPermission) {
			// Not damage: obtaining the certificate again would not
			// help, and would spend an order of the CA's rate limit.
			d.Unreadable = true
			out = append(out, d)
			continue
		}
		if aside, merr := statefile.MoveAside(dir, now); merr == nil {
			d.Aside = aside
		} else {
			d.Err = fmt.Errorf("%w; %v", err, merr)
		}
		out = append(out, d)
	}
	userDirs, _ := filepath.Glob(filepath.Join(root, "acme", "*", "users", "*"))
	for _, dir := range userDirs {
		if file, err := checkAccountDir(dir); err != nil {
			out = append(out, StorageDamage{Path: file, Err: err, Unreadable: errors.Is(err, fs.ErrPermission)})
		}
	}
	return out
}

// checkCertDir checks the certificate of one name: a PEM chain with
// nothing left over, a private key that matches its leaf, JSON metadata.
// It returns the damaged file.
func checkCertDir(dir string) (string, error) {
	name := filepath.Base(dir)
	crtPath, keyPath, jsonPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"), filepath.Join(dir, name+".json")
	crt, err := os.ReadFile(crtPath)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil // not a certificate's directory of certmagic's (or nothing yet)
	}
	if err != nil {
		return crtPath, err
	}
	var leaf *x509.Certificate
	rest := crt
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if b.Type != "CERTIFICATE" || err != nil {
			return crtPath, fmt.Errorf("not a PEM certificate chain")
		}
		if leaf == nil {
			leaf = c
		}
	}
	if leaf == nil || len(bytes.TrimSpace(rest)) > 0 {
		return crtPath, fmt.Errorf("not a whole PEM certificate chain")
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return keyPath, err
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return keyPath, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return keyPath, fmt.Errorf("the key does not match the certificate")
	}
	meta, err := os.ReadFile(jsonPath)
	if err != nil {
		return jsonPath, err
	}
	if !json.Valid(meta) {
		return jsonPath, fmt.Errorf("not JSON")
	}
	return "", nil
}

// checkAccountDir checks an account: its key and its JSON registration.
func checkAccountDir(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return dir, err
	}
	for _, e := range ents {
		path := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			return path, err
		}
		switch filepath.Ext(e.Name()) {
		case ".key":
			if _, err := parseKey(b); err != nil {
				return path, err
			}
		case ".json":
			if !json.Valid(b) {
				return path, fmt.Errorf("not JSON")
			}
		}
	}
	return "", nil
}

// parseKey parses a PEM private key as certmagic writes them.
func parseKey(b []byte) (crypto.Signer, error) {
	block, rest := pem.Decode(b)
	if block == nil || len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("not a whole PEM private key")
	}
	var key any
	var err error
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("not a private key: %w", err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("not a signing key")
	}
	return s, nil
}
