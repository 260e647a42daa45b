package gateway

// BackendState is whether one backend of a service takes requests now.
type BackendState struct {
	Service string
	Backend string // scheme://host:port
	Up      bool
	// Checked says an active health check decides Up; without one, Up only
	// turns false for a cooldown after a failed request.
	Checked bool
}

// Backends returns the state of every backend of the generation, by
// service in file order: what the status page shows until richer health
// results are wired in.
func (g *Gateway) Backends() []BackendState {
	var out []BackendState
	for _, s := range g.services {
		for _, b := range s.backends {
			out = append(out, BackendState{Service: s.cfg.Name, Backend: b.name, Up: b.healthy(), Checked: s.cfg.Health != nil})
		}
	}
	return out
}
