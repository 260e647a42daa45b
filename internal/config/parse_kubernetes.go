package config

import (
	"fmt"
	"strings"
)

// Kubernetes names what the cluster uses, for `labgate render k8s`.
type Kubernetes struct {
	Namespace              string // "" leaves metadata.namespace out
	IngressClass           ClassNames
	Gateway                ClassNames
	GatewayClass           ClassNames
	ClusterIssuer          string
	ExternalDNSAnnotations string     // "both", "alpha", "current"
	TCPServices            ClassNames // "namespace/name" of ingress-nginx ConfigMaps
	UDPServices            ClassNames
	SecretStore            SecretStore
	BlackboxExporter       string // host:port
}

// ClassNames holds one name for public services and one for private ones.
type ClassNames struct {
	Public, Private string
}

// For returns the name for class c.
func (n ClassNames) For(c Class) string {
	if c == Public {
		return n.Public
	}
	return n.Private
}

// SecretStore is an External Secrets store.
type SecretStore struct {
	Name string
	Kind string // "ClusterSecretStore" or "SecretStore"
}

// ServiceKubernetes changes how one service is rendered for Kubernetes.
type ServiceKubernetes struct {
	Service   string // an existing Service to route to; "" renders one
	TLSSecret string // "" means NAME-tls
}

func (b *builder) kubernetes(f *file, c *Config) {
	k := f.Kubernetes
	c.Kubernetes = Kubernetes{
		Namespace:              k.Namespace,
		IngressClass:           ClassNames{k.IngressClass.Public, k.IngressClass.Private},
		Gateway:                ClassNames{k.Gateway.Public, k.Gateway.Private},
		GatewayClass:           ClassNames{k.GatewayClass.Public, k.GatewayClass.Private},
		ClusterIssuer:          k.ClusterIssuer,
		ExternalDNSAnnotations: k.ExternalDNSAnnotations,
		TCPServices:            ClassNames{k.TCPServices.Public, k.TCPServices.Private},
		UDPServices:            ClassNames{k.UDPServices.Public, k.UDPServices.Private},
		SecretStore:            SecretStore{k.SecretStore.Name, k.SecretStore.Kind},
		BlackboxExporter:       k.BlackboxExporter,
	}
	if k.Namespace != "" && !dnsLabel(k.Namespace) {
		b.fail("kubernetes.namespace", "%q is not a namespace name (lower case letters, digits and dashes, at most 63)", k.Namespace)
	}
	for _, n := range []struct{ path, v string }{
		{"kubernetes.ingress_class.public", k.IngressClass.Public},
		{"kubernetes.ingress_class.private", k.IngressClass.Private},
		{"kubernetes.cluster_issuer", k.ClusterIssuer},
		{"kubernetes.gateway.public", k.Gateway.Public},
		{"kubernetes.gateway.private", k.Gateway.Private},
		{"kubernetes.gateway_class.public", k.GatewayClass.Public},
		{"kubernetes.gateway_class.private", k.GatewayClass.Private},
		{"kubernetes.secret_store.name", k.SecretStore.Name},
	} {
		if !dnsSubdomain(n.v) {
			b.fail(n.path, "%q is not a Kubernetes object name (lower case letters, digits, dashes and dots)", n.v)
		}
	}
	for _, n := range []struct{ path, v string }{
		{"kubernetes.tcp_services.public", k.TCPServices.Public},
		{"kubernetes.tcp_services.private", k.TCPServices.Private},
		{"kubernetes.udp_services.public", k.UDPServices.Public},
		{"kubernetes.udp_services.private", k.UDPServices.Private},
	} {
		if ns, name, ok := strings.Cut(n.v, "/"); !ok || !dnsLabel(ns) || !dnsSubdomain(name) {
			b.fail(n.path, "%q is not namespace/name, as the controller's flag takes it", n.v)
		}
	}
	if k.BlackboxExporter != "" {
		b.hostPort("kubernetes.blackbox_exporter", k.BlackboxExporter)
	}
	for i, fs := range f.Services {
		if fs == nil || i >= len(c.Services) {
			continue
		}
		sk := fs.Kubernetes
		path := fmt.Sprintf("services[%d].kubernetes", i)
		if sk.Service != "" && !dnsLabel(sk.Service) {
			b.fail(path+".service", "%q is not a Service name (lower case letters, digits and dashes, at most 63)", sk.Service)
		}
		if sk.TLSSecret != "" && !dnsSubdomain(sk.TLSSecret) {
			b.fail(path+".tls_secret", "%q is not a Secret name (lower case letters, digits, dashes and dots)", sk.TLSSecret)
		}
	}
}

// serviceKubernetes is read in services(), which builds Service values.
func serviceKubernetes(f *fileService) ServiceKubernetes {
	return ServiceKubernetes{Service: f.Kubernetes.Service, TLSSecret: f.Kubernetes.TLSSecret}
}

// dnsLabel reports whether s is an RFC 1123 label, as Kubernetes wants for
// namespaces and Services.
func dnsLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// dnsSubdomain reports whether s is an RFC 1123 subdomain, as Kubernetes wants
// for most object names.
func dnsSubdomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !dnsLabel(l) {
			return false
		}
	}
	return true
}
