package dns

import (
	"encoding/base64"

	"github.com/labgate/labgate/internal/config"
)

// Check reports what in cfg's dns section cannot work, with the position of
// the value concerned: the dry run behind `labgate check`. It makes no
// network call. The errors are config.Errors, or nil.
func Check(cfg *config.Config) error {
	var errs config.Errors
	d := cfg.DNS
	if d.Zone == "" {
		if d.Provider != nil {
			errs = append(errs, cfg.Errorf("dns.provider", "set domain (or dns.zone): the zone whose records labgate manages"))
		}
		if d.Serve != nil {
			errs = append(errs, cfg.Errorf("dns.serve", "set domain (or dns.zone): the zone the embedded DNS server answers for"))
		}
	}
	if p := d.Provider; p != nil && p.Type == "rfc2136" && p.TSIGSecret.IsSet() {
		if _, err := base64.StdEncoding.DecodeString(p.TSIGSecret.Value()); err != nil {
			errs = append(errs, cfg.Errorf("dns.provider.tsig_secret", `the TSIG secret is not base64 (copy the secret "…" of the key tsig-keygen printed)`))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}
