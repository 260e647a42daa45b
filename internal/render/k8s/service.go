package k8s

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// service renders a backend outside the cluster as a Service: ExternalName
// for a host name, or selector-less with EndpointSlices for IP addresses
// (one slice per address family and port).
func (m *model) service(b *backend) []object {
	port := servicePort{Name: b.portName, Protocol: b.protocol, AppProtocol: b.appProtocol, Port: b.port}
	spec := serviceSpec{Ports: []servicePort{port}}
	if b.externalName != "" {
		spec = serviceSpec{Type: "ExternalName", ExternalName: b.externalName, Ports: []servicePort{port}}
	}
	svc, tm := m.spec("v1", "Service", b.name, spec)
	tm.Metadata.Labels = labels(b.service, b.name)
	objs := []object{svc}
	if b.externalName != "" {
		return objs
	}
	type group struct {
		family string
		port   uint16
	}
	groups := map[group][]netip.Addr{}
	for _, ep := range b.endpoints {
		fam := "IPv4"
		if ep.Addr().Is6() {
			fam = "IPv6"
		}
		g := group{fam, ep.Port()}
		groups[g] = append(groups[g], ep.Addr())
	}
	keys := make([]group, 0, len(groups))
	ports := map[string]int{}
	for g := range groups {
		keys = append(keys, g)
		ports[g.family]++
	}
	slices.SortFunc(keys, func(a, b group) int { return cmp.Or(cmp.Compare(a.family, b.family), cmp.Compare(a.port, b.port)) })
	for _, g := range keys {
		name := fmt.Sprintf("%s-%s", b.name, strings.ToLower(g.family))
		if ports[g.family] > 1 {
			name = fmt.Sprintf("%s-%d", name, g.port)
		}
		addrs := groups[g]
		slices.SortFunc(addrs, netip.Addr.Compare)
		addrs = slices.Compact(addrs)
		es := &endpointSlice{typeMeta: m.meta("discovery.k8s.io/v1", "EndpointSlice", name), AddressType: g.family,
			Ports: []endpointPort{{Name: b.portName, Protocol: b.protocol, AppProtocol: b.appProtocol, Port: int32(g.port)}}}
		es.Metadata.Labels = labels(b.service, b.name)
		es.Metadata.Labels["kubernetes.io/service-name"] = b.name
		// Slices of another manager are left alone by the EndpointSlice controller.
		es.Metadata.Labels["endpointslice.kubernetes.io/managed-by"] = "labgate"
		for _, a := range addrs {
			es.Endpoints = append(es.Endpoints, endpoint{Addresses: []string{a.String()}, Conditions: endpointConditions{Ready: true}})
		}
		objs = append(objs, object{kind: "EndpointSlice", name: name, value: es})
	}
	return objs
}
