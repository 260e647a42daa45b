package cli

import (
	"errors"
	"fmt"
	"os"

	"filippo.io/age"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/sops"
)

// loadConfig reads and parses a config file, decrypting it first when SOPS
// encrypted it (age keys from SOPS_AGE_KEY, SOPS_AGE_KEY_FILE or the user's
// sops/age/keys.txt). Errors keep pointing at the file's lines: decryption
// replaces values in place. *_file secrets that sops encrypted (as binary)
// are decrypted too.
func loadConfig(path string) (*config.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	keys := func() ([]age.Identity, error) { return sops.Identities(nil, "") }
	if data, err = sops.Plain(data, keys); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return config.Parse(path, data, config.Options{ReadSecret: sops.SecretFile(keys)})
}

// loadUnreadSecrets reads a config file for a command that uses none of its
// secrets (render, relay): ${VAR} and *_file secrets stay unread, so it runs
// where they are absent. A SOPS-encrypted file is decrypted when an age key
// is at hand; without one its sops block is set aside and the encrypted
// values stay as they are, which works when sops encrypted only secrets
// (encrypted_regex, as docs/gitops.md shows).
func loadUnreadSecrets(path string) (*config.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	opts := config.Options{UnreadSecrets: true}
	if !sops.Encrypted(data) {
		return config.Parse(path, data, opts)
	}
	ids, err := sops.Identities(nil, "")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(ids) > 0 {
		if data, err = sops.Decrypt(data, ids); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return config.Parse(path, data, opts)
	}
	if data, err = sops.WithoutMetadata(data); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg, err := config.Parse(path, data, opts)
	var errs config.Errors
	if errors.As(err, &errs) {
		errs = append(errs, config.Error{File: path, Msg: "sops encrypted more than secrets, and no age key is set to decrypt them: " +
			"encrypt only secrets (encrypted_regex in .sops.yaml) or set SOPS_AGE_KEY_FILE"})
		return nil, errs
	}
	return cfg, err
}
