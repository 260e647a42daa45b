package k8s

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/labgate/labgate/internal/config"
)

// ingress renders the model for two ingress-nginx controllers (ingress
// classes public and private): an Ingress per service, and the tcp and udp
// ports as entries of each controller's tcp-services and udp-services
// ConfigMaps.
func (m *model) ingress(cfg *config.Config) ([]object, config.Errors) {
	var objs []object
	for _, r := range m.routes {
		a := map[string]string{}
		if !r.passthrough && !r.wildcard {
			a["cert-manager.io/cluster-issuer"] = m.names.ClusterIssuer
		}
		m.dnsAnnotations(a, r.dnsTarget)
		if r.passthrough {
			// Needs the controller's --enable-ssl-passthrough.
			a["nginx.ingress.kubernetes.io/ssl-passthrough"] = "true"
		}
		if r.https {
			a["nginx.ingress.kubernetes.io/backend-protocol"] = "HTTPS"
			if r.serverName != "" {
				a["nginx.ingress.kubernetes.io/proxy-ssl-name"] = r.serverName
				a["nginx.ingress.kubernetes.io/proxy-ssl-server-name"] = "on"
			}
		}
		if r.allowHTTP {
			a["nginx.ingress.kubernetes.io/ssl-redirect"] = "false"
		}
		spec := ingressSpec{IngressClassName: m.names.IngressClass.For(r.class)}
		path := r.path
		if r.passthrough {
			path = "/"
		}
		for _, h := range r.hosts {
			spec.Rules = append(spec.Rules, ingressRule{Host: h, HTTP: ingressRuleHTTP{Paths: []ingressPath{{
				Backend:  ingressBackend{Service: ingressServiceBackend{Name: r.to.name, Port: ingressServicePort{Number: r.to.port}}},
				Path:     path,
				PathType: "Prefix",
			}}}})
		}
		if !r.passthrough {
			spec.TLS = []ingressTLS{{SecretName: r.tlsSecret, Hosts: r.hosts}}
		}
		o, tm := m.spec("networking.k8s.io/v1", "Ingress", r.name, spec)
		tm.Metadata.Annotations = a
		objs = append(objs, o)
	}
	var errs config.Errors
	for _, l := range []struct {
		protocol string
		names    config.ClassNames
	}{{"TCP", m.names.TCPServices}, {"UDP", m.names.UDPServices}} {
		for _, class := range []config.Class{config.Public, config.Private} {
			data := map[string]string{}
			for _, r := range m.l4 {
				if r.protocol != l.protocol || r.class != class {
					continue
				}
				if m.namespace == "" {
					errs = append(errs, cfg.Errorf(fmt.Sprintf("services[%d]", serviceIndex(cfg, r.service)),
						"%s port %d goes into ingress-nginx's %s-services ConfigMap, which names Services with their namespace: set kubernetes.namespace or --namespace",
						strings.ToLower(r.protocol), r.port, strings.ToLower(r.protocol)))
					continue
				}
				// namespace/service:port[:PROXY decode][:PROXY send]
				v := m.namespace + "/" + r.to.name + ":" + strconv.Itoa(int(r.to.port))
				switch {
				case class == config.Public && r.proxyProtocol:
					v += ":PROXY:PROXY"
				case class == config.Public:
					v += ":PROXY"
				case r.proxyProtocol:
					v += "::PROXY"
				}
				data[strconv.Itoa(int(r.port))] = v
			}
			if len(data) == 0 {
				continue
			}
			ns, name, _ := strings.Cut(l.names.For(class), "/")
			cm := &configMap{typeMeta: typeMeta{APIVersion: "v1", Kind: "ConfigMap", Metadata: meta{Name: name, Namespace: ns}}, Data: data}
			objs = append(objs, object{kind: "ConfigMap", name: ns + "/" + name, value: cm})
		}
	}
	return objs, errs
}

func serviceIndex(cfg *config.Config, name string) int {
	for i, s := range cfg.Services {
		if s.Name == name {
			return i
		}
	}
	return 0
}
