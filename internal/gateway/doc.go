// Package gateway is the HTTP side of one config generation: per-class route
// tables, reverse proxies with one tuned upstream per backend, round-robin
// load balancing with passive and active health, static file services, the
// echo service, error pages, metrics and the access log.
//
// The class of a request (public or private) is the class of the listener
// the daemon serves the handler on, never anything the client says. A public
// handler's route table holds only public services, so no Host header,
// absolute-form URI or HTTP/2 :authority reaches a private one. Routing uses
// one normalized host (see normalizeHost) and nothing else.
//
// Requests to http:// backends take the lean HTTP/1.1 upstream path (h1.go):
// the upstream exchange runs in the handler's goroutine on a pooled
// connection, without http.Transport's read and write loop goroutines.
// Upgrades (websockets), CONNECT, https:// backends and health checks go
// through httputil.ReverseProxy and the backend's http.Transport.
//
// Active health: a backend whose service has a health section is taken out
// of rotation when a check of it fails and put back when one passes. The
// check is the health monitor's http check when the daemon feeds its
// results through Gateway.SetBackendHealth (Options.Fed), so that each
// backend is polled once per interval; else the gateway's own probe of
// health.path.
//
// Connections arrive with RemoteAddr already set to the real client (from a
// PROXY header on public listeners, from the socket on private ones); the
// gateway replaces whatever forwarding headers the client sent with that
// address.
package gateway
