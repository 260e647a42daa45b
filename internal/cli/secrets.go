package cli

import (
	"fmt"
	"os"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/sops"
)

// loadConfig reads and parses a config file, decrypting it first when SOPS
// encrypted it (age keys from SOPS_AGE_KEY, SOPS_AGE_KEY_FILE or the user's
// sops/age/keys.txt). Errors keep pointing at the file's lines: decryption
// replaces values in place.
func loadConfig(path string) (*config.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if sops.Encrypted(data) {
		ids, err := sops.Identities(nil, "")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if data, err = sops.Decrypt(data, ids); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	return config.Parse(path, data, config.Options{})
}
