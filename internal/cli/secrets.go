package cli

import (
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
	if sops.Encrypted(data) {
		ids, err := keys()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if data, err = sops.Decrypt(data, ids); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return config.Parse(path, data, config.Options{ReadSecret: sops.SecretFile(keys)})
}
