// Package k8s renders a labgate file as Kubernetes manifests, for a lab that
// outgrows one machine: k3s (or any cluster) with cert-manager, ExternalDNS,
// prometheus-operator, External Secrets and two ingress controllers, one for
// public services and one for private ones (or two Gateways).
//
// Render is pure: the same *config.Config and Options give byte-identical
// output. It first builds a model of what the lab asks of the cluster (per
// service: hosts, class, backends, ports, TLS, DNS target, monitoring), then
// hands it to one of two emitters: Ingress (with ingress-nginx's tcp-services
// ConfigMaps) or Gateway API (Gateway, HTTPRoute, TLSRoute, TCPRoute,
// UDPRoute). Secrets are never rendered: credentials reach the cluster as
// ExternalSecrets that name a store.
package k8s

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/labgate/labgate/internal/config"
)

// Output selects the emitter.
type Output string

// The outputs.
const (
	Ingress    Output = "ingress"
	GatewayAPI Output = "gateway-api"
)

// Options change what Render emits; the zero value renders Ingress objects in
// the file's kubernetes.namespace.
type Options struct {
	Output Output
	// Namespace, when set, replaces kubernetes.namespace.
	Namespace string
}

// Render returns the manifests for cfg as `---`-separated YAML, sorted by kind
// (in the order a cluster needs them) and name. A part of the file that
// cannot be rendered is an error at its position (config.Errors), and nothing
// is returned.
func Render(cfg *config.Config, opts Options) ([]byte, error) {
	if opts.Output == "" {
		opts.Output = Ingress
	}
	if opts.Output != Ingress && opts.Output != GatewayAPI {
		return nil, fmt.Errorf("unknown output %q (want %s or %s)", opts.Output, Ingress, GatewayAPI)
	}
	m, errs := build(cfg, opts)
	var objs []object
	objs = append(objs, m.common(opts.Output)...)
	switch opts.Output {
	case Ingress:
		o, e := m.ingress(cfg)
		objs, errs = append(objs, o...), append(errs, e...)
	case GatewayAPI:
		o, e := m.gatewayAPI(cfg)
		objs, errs = append(objs, o...), append(errs, e...)
	}
	seen := map[string]bool{}
	for _, o := range objs {
		// ConfigMaps are named namespace/name already; the rest share the namespace.
		key := o.kind + " " + o.name
		if seen[key] {
			errs = append(errs, cfg.Errorf("services", "two %s objects would be named %q (a service's name meets one labgate derives): rename the service", o.kind, o.name))
		}
		seen[key] = true
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return encode(objs)
}

// kindOrder is the order objects are written in: what others refer to first.
var kindOrder = []string{
	"ExternalSecret", "Certificate", "ConfigMap", "Service", "EndpointSlice", "DNSEndpoint",
	"Gateway", "Ingress", "HTTPRoute", "TLSRoute", "TCPRoute", "UDPRoute", "BackendTLSPolicy",
	"ServiceMonitor", "ScrapeConfig", "Probe", "PrometheusRule",
}

func encode(objs []object) ([]byte, error) {
	slices.SortStableFunc(objs, func(a, b object) int {
		return cmp.Or(cmp.Compare(slices.Index(kindOrder, a.kind), slices.Index(kindOrder, b.kind)), cmp.Compare(a.name, b.name))
	})
	var buf bytes.Buffer
	for i, o := range objs {
		if i > 0 {
			buf.WriteString("---\n")
		}
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(o.value); err != nil {
			return nil, fmt.Errorf("encoding %s %s: %w", o.kind, o.name, err)
		}
		if err := enc.Close(); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

func (m *model) meta(apiVersion, kind, name string) typeMeta {
	return typeMeta{APIVersion: apiVersion, Kind: kind, Metadata: meta{Name: name, Namespace: m.namespace}}
}

func (m *model) spec(apiVersion, kind, name string, spec any) (object, *typeMeta) {
	o := &specObject{typeMeta: m.meta(apiVersion, kind, name), Spec: spec}
	return object{kind: kind, name: name, value: o}, &o.typeMeta
}

// Labels on what labgate renders, so that ServiceMonitors can select it.
const (
	labelManagedBy = "app.kubernetes.io/managed-by"
	labelName      = "app.kubernetes.io/name"
	labelInstance  = "app.kubernetes.io/instance"
	managedBy      = "labgate"
)

func labels(service, instance string) map[string]string {
	return map[string]string{labelManagedBy: managedBy, labelName: service, labelInstance: instance}
}

// dnsAnnotations are ExternalDNS's target annotations, in the prefixes asked for.
func (m *model) dnsAnnotations(a map[string]string, target string) {
	switch m.names.ExternalDNSAnnotations {
	case "alpha":
		a["external-dns.alpha.kubernetes.io/target"] = target
	case "current":
		a["external-dns.kubernetes.io/target"] = target
	default:
		a["external-dns.alpha.kubernetes.io/target"] = target
		a["external-dns.kubernetes.io/target"] = target
	}
}

// common renders what both outputs share: backends, credentials,
// certificates and monitoring.
func (m *model) common(out Output) []object {
	var objs []object
	for _, b := range m.backends {
		objs = append(objs, m.service(b)...)
	}
	if m.wildcard != nil && out == Ingress && m.usesWildcard() {
		o, _ := m.spec("cert-manager.io/v1", "Certificate", m.wildcard.name, certificateSpec{
			SecretName: m.wildcard.secret,
			DNSNames:   []string{m.wildcard.dnsName},
			IssuerRef:  issuerRef{Group: "cert-manager.io", Kind: "ClusterIssuer", Name: m.names.ClusterIssuer},
		})
		objs = append(objs, o)
	}
	if d := m.dnsSecret; d != nil {
		spec := externalSecretSpec{
			RefreshInterval: "1h",
			SecretStoreRef:  secretStoreRef{Kind: m.names.SecretStore.Kind, Name: m.names.SecretStore.Name},
			Target:          externalSecretTarget{Name: "labgate-dns", CreationPolicy: "Owner"},
		}
		for _, k := range d.keys {
			spec.Data = append(spec.Data, externalSecretData{SecretKey: k.secretKey, RemoteRef: remoteRef{Key: "labgate-dns", Property: k.property}})
		}
		o, _ := m.spec("external-secrets.io/v1", "ExternalSecret", "labgate-dns", spec)
		objs = append(objs, o)
	}
	if len(m.entryPoints) > 0 {
		// ExternalDNS's crd source (--source=crd) creates these.
		spec := dnsEndpointSpec{}
		for _, r := range m.entryPoints {
			spec.Endpoints = append(spec.Endpoints, dnsEndpoint{DNSName: r.name, RecordType: r.recordType, Targets: r.targets})
		}
		o, _ := m.spec("externaldns.k8s.io/v1alpha1", "DNSEndpoint", "labgate-entry-points", spec)
		objs = append(objs, o)
	}
	for _, mon := range m.monitors {
		objs = append(objs, m.monitoring(mon)...)
	}
	return objs
}

func (m *model) usesWildcard() bool {
	for _, r := range m.routes {
		if r.wildcard {
			return true
		}
	}
	return false
}
