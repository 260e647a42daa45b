package k8s

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/labgate/labgate/internal/config"
)

const gatewayAPI = "gateway.networking.k8s.io/v1"

// maxListeners is the most listeners one Gateway may have.
const maxListeners = 64

// gatewayAPI renders the model for Gateway API: one Gateway per class with a
// listener per host name (HTTPS terminated with the service's certificate,
// or TLS passed through) and per tcp/udp port, and the routes that attach to
// those listeners. cert-manager's gateway-shim issues the listeners'
// certificates; ExternalDNS reads the target annotation of the Gateway.
func (m *model) gatewayAPI(cfg *config.Config) ([]object, config.Errors) {
	var objs []object
	var errs config.Errors
	for _, class := range []config.Class{config.Public, config.Private} {
		gw := m.names.Gateway.For(class)
		var listeners []listener
		seen := map[string]bool{}
		add := func(l listener) string {
			if !seen[l.Name] {
				seen[l.Name] = true
				listeners = append(listeners, l)
			}
			return l.Name
		}
		target := ""
		needRedirect := false
		for _, r := range m.routes {
			if r.class != class {
				continue
			}
			target = r.dnsTarget
			var parents []parentRef
			for _, h := range r.hosts {
				var name string
				switch {
				case r.passthrough:
					name = add(listener{Name: "tls-" + h, Hostname: h, Port: 443, Protocol: "TLS", TLS: &listenerTLS{Mode: "Passthrough"}})
				case r.wildcard:
					name = add(listener{Name: "https-wildcard", Hostname: "*." + m.domain, Port: 443, Protocol: "HTTPS",
						TLS: &listenerTLS{Mode: "Terminate", CertificateRefs: []secretObjRef{{Name: r.tlsSecret}}}})
				default:
					name = add(listener{Name: "https-" + wildcardName(h), Hostname: h, Port: 443, Protocol: "HTTPS",
						TLS: &listenerTLS{Mode: "Terminate", CertificateRefs: []secretObjRef{{Name: r.tlsSecret}}}})
				}
				if !slices.ContainsFunc(parents, func(p parentRef) bool { return p.SectionName == name }) {
					parents = append(parents, parentRef{Name: gw, SectionName: name})
				}
			}
			if r.passthrough {
				o, _ := m.spec(gatewayAPI, "TLSRoute", r.name, l4RouteSpec{ParentRefs: parents, Hostnames: r.hosts,
					Rules: []l4RouteRule{{BackendRefs: []backendRef{{Name: r.to.name, Port: r.to.port}}}}})
				objs = append(objs, o)
				continue
			}
			needRedirect = true
			if r.allowHTTP {
				parents = append(parents, parentRef{Name: gw, SectionName: add(httpListener)})
			}
			o, _ := m.spec(gatewayAPI, "HTTPRoute", r.name, httpRouteSpec{ParentRefs: parents, Hostnames: r.hosts,
				Rules: []httpRouteRule{{
					Matches:     []httpRouteMatch{{Path: httpPathMatch{Type: "PathPrefix", Value: r.path}}},
					BackendRefs: []backendRef{{Name: r.to.name, Port: r.to.port}},
				}}})
			objs = append(objs, o)
			if r.https {
				host := r.serverName
				if host == "" {
					host = m.backendHost(r)
				}
				if host == "" {
					errs = append(errs, cfg.Errorf(fmt.Sprintf("services[%d].backend_tls.server_name", serviceIndex(cfg, r.name)),
						"Gateway API verifies an https backend by host name: set backend_tls.server_name to the name on the backend's certificate"))
				}
				o, _ := m.spec(gatewayAPI, "BackendTLSPolicy", r.name, backendTLSPolicySpec{
					TargetRefs: []policyTargetRef{{Group: "", Kind: "Service", Name: r.to.name}},
					Validation: backendTLSValidate{WellKnownCACertificates: "System", Hostname: host},
				})
				objs = append(objs, o)
			}
		}
		if needRedirect {
			add(httpListener)
			o, _ := m.spec(gatewayAPI, "HTTPRoute", gw+"-https-redirect", httpRouteSpec{
				ParentRefs: []parentRef{{Name: gw, SectionName: httpListener.Name}},
				Rules: []httpRouteRule{{Filters: []httpFilter{{Type: "RequestRedirect",
					RequestRedirect: &requestRedirect{Scheme: "https", StatusCode: 301}}}}},
			})
			objs = append(objs, o)
		}
		for _, r := range m.l4 {
			if r.class != class {
				continue
			}
			kind, name := "TCPRoute", fmt.Sprintf("tcp-%d", r.port)
			if r.protocol == "UDP" {
				kind, name = "UDPRoute", fmt.Sprintf("udp-%d", r.port)
			}
			add(listener{Name: name, Port: r.port, Protocol: r.protocol})
			o, _ := m.spec(gatewayAPI, kind, r.to.name, l4RouteSpec{ParentRefs: []parentRef{{Name: gw, SectionName: name}},
				Rules: []l4RouteRule{{BackendRefs: []backendRef{{Name: r.to.name, Port: r.to.port}}}}})
			objs = append(objs, o)
		}
		if len(listeners) == 0 {
			continue
		}
		if len(listeners) > maxListeners {
			errs = append(errs, cfg.Errorf("kubernetes.gateway", "the %s Gateway would need %d listeners (one per host name and port), more than Gateway API's %d: use a wildcard (tls.private_wildcard) or fewer names",
				class, len(listeners), maxListeners))
		}
		slices.SortFunc(listeners, func(a, b listener) int {
			if a.Port != b.Port {
				return int(a.Port - b.Port)
			}
			return compareStrings(a.Name, b.Name)
		})
		a := map[string]string{"cert-manager.io/cluster-issuer": m.names.ClusterIssuer}
		if target != "" {
			m.dnsAnnotations(a, target)
		}
		o, tm := m.spec(gatewayAPI, "Gateway", gw, gatewaySpec{GatewayClassName: m.names.GatewayClass.For(class), Listeners: listeners})
		tm.Metadata.Annotations = a
		objs = append(objs, o)
	}
	return objs, errs
}

var httpListener = listener{Name: "http", Port: 80, Protocol: "HTTP"}

// backendHost is the host name of a route's backend outside the cluster, or
// "" for IP addresses.
func (m *model) backendHost(r *route) string {
	for _, b := range m.backends {
		if b.name == r.to.name {
			return b.externalName
		}
	}
	if _, err := netip.ParseAddr(r.to.name); err == nil {
		return ""
	}
	return r.to.name
}

func wildcardName(h string) string {
	if len(h) > 2 && h[:2] == "*." {
		return "wildcard." + h[2:]
	}
	return h
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
