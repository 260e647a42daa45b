package daemon

import (
	"log/slog"
	"strings"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/listen"
)

// relayInPrivateAllow returns the trusted relays that gateway.private.allow
// admits too (all of them when allow is empty), IPv4-mapped ones unmapped.
// The relay is the one machine strangers reach: whoever takes it over would
// reach every private service on the private listeners.
func relayInPrivateAllow(cfg *config.Config) []string {
	pub, priv := cfg.Gateway.Public, cfg.Gateway.Private
	if pub == nil || priv == nil {
		return nil
	}
	var out []string
	for _, t := range pub.TrustedRelays {
		relay := listen.UnmapPrefix(t)
		admitted := len(priv.Allow) == 0
		for _, a := range priv.Allow {
			if listen.UnmapPrefix(a).Overlaps(relay) {
				admitted = true
				break
			}
		}
		if admitted {
			out = append(out, relay.String())
		}
	}
	return out
}

// warnRelayInPrivateAllow logs relayInPrivateAllow's finding, if any.
func warnRelayInPrivateAllow(log *slog.Logger, cfg *config.Config) {
	if relays := relayInPrivateAllow(cfg); len(relays) > 0 {
		log.Warn("gateway.private.allow admits the relay: from it, private services are reachable; leave its address out of allow (see docs/deploy.md)",
			"trusted_relays", strings.Join(relays, ","))
	}
}
