package health

import "github.com/labgate/labgate/internal/config"

// BalancingCheck names the check of s whose results, backend by backend,
// also decide which backends take requests: the first http check, run from
// inside on each backend (the implicit check of health.path when the
// service has no checks). "" when s has none (no health section, only tcp,
// tls or dns checks, no backends): the gateway then probes health.path on
// each backend itself.
//
// Its results reach the gateway through Env.OnBackend, one per backend and
// round, whatever the thresholds: those decide the service's state and its
// alerts, not the rotation.
func BalancingCheck(s *config.Service) string {
	if s.Health == nil || len(s.Backends) == 0 {
		return ""
	}
	for _, ch := range s.Health.Checks {
		if ch.Type == "http" {
			return ch.Name
		}
	}
	return ""
}
