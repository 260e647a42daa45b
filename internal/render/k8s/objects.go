package k8s

// The Kubernetes objects labgate renders, as small structs of their own: the
// renderer needs a few fields of a few kinds, and these keep k8s.io/api (and
// its dependencies) out of the labgate binary. Field names and nesting follow
// the API types exactly; the tests decode every rendered object strictly into
// the official Go types (internal/render/k8s/validate).

type meta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

type typeMeta struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   meta   `yaml:"metadata"`
}

// object is one rendered object: its identity and its whole value.
type object struct {
	kind, name string
	value      any
}

type specObject struct {
	typeMeta `yaml:",inline"`
	Spec     any `yaml:"spec"`
}

// Core and discovery.

type configMap struct {
	typeMeta `yaml:",inline"`
	Data     map[string]string `yaml:"data"`
}

type serviceSpec struct {
	Type         string        `yaml:"type,omitempty"`
	ExternalName string        `yaml:"externalName,omitempty"`
	Ports        []servicePort `yaml:"ports,omitempty"`
}

type servicePort struct {
	Name        string `yaml:"name"`
	Protocol    string `yaml:"protocol"`
	AppProtocol string `yaml:"appProtocol,omitempty"`
	Port        int32  `yaml:"port"`
	TargetPort  int32  `yaml:"targetPort,omitempty"`
}

type endpointSlice struct {
	typeMeta    `yaml:",inline"`
	AddressType string         `yaml:"addressType"`
	Endpoints   []endpoint     `yaml:"endpoints"`
	Ports       []endpointPort `yaml:"ports"`
}

type endpoint struct {
	Addresses  []string           `yaml:"addresses"`
	Conditions endpointConditions `yaml:"conditions"`
}

type endpointConditions struct {
	Ready bool `yaml:"ready"`
}

type endpointPort struct {
	Name        string `yaml:"name"`
	Protocol    string `yaml:"protocol"`
	AppProtocol string `yaml:"appProtocol,omitempty"`
	Port        int32  `yaml:"port"`
}

// networking.k8s.io/v1 Ingress.

type ingressSpec struct {
	IngressClassName string        `yaml:"ingressClassName"`
	Rules            []ingressRule `yaml:"rules"`
	TLS              []ingressTLS  `yaml:"tls,omitempty"`
}

type ingressRule struct {
	Host string          `yaml:"host"`
	HTTP ingressRuleHTTP `yaml:"http"`
}

type ingressRuleHTTP struct {
	Paths []ingressPath `yaml:"paths"`
}

type ingressPath struct {
	Backend  ingressBackend `yaml:"backend"`
	Path     string         `yaml:"path"`
	PathType string         `yaml:"pathType"`
}

type ingressBackend struct {
	Service ingressServiceBackend `yaml:"service"`
}

type ingressServiceBackend struct {
	Name string             `yaml:"name"`
	Port ingressServicePort `yaml:"port"`
}

type ingressServicePort struct {
	Number int32 `yaml:"number"`
}

type ingressTLS struct {
	SecretName string   `yaml:"secretName,omitempty"`
	Hosts      []string `yaml:"hosts"`
}

// cert-manager.io/v1 Certificate.

type certificateSpec struct {
	SecretName string    `yaml:"secretName"`
	DNSNames   []string  `yaml:"dnsNames"`
	IssuerRef  issuerRef `yaml:"issuerRef"`
}

type issuerRef struct {
	Group string `yaml:"group"`
	Kind  string `yaml:"kind"`
	Name  string `yaml:"name"`
}

// external-secrets.io/v1 ExternalSecret.

type externalSecretSpec struct {
	RefreshInterval string               `yaml:"refreshInterval"`
	SecretStoreRef  secretStoreRef       `yaml:"secretStoreRef"`
	Target          externalSecretTarget `yaml:"target"`
	Data            []externalSecretData `yaml:"data"`
}

type secretStoreRef struct {
	Kind string `yaml:"kind"`
	Name string `yaml:"name"`
}

type externalSecretTarget struct {
	Name           string `yaml:"name"`
	CreationPolicy string `yaml:"creationPolicy"`
}

type externalSecretData struct {
	SecretKey string    `yaml:"secretKey"`
	RemoteRef remoteRef `yaml:"remoteRef"`
}

type remoteRef struct {
	Key      string `yaml:"key"`
	Property string `yaml:"property,omitempty"`
}

// monitoring.coreos.com: ServiceMonitor, ScrapeConfig, Probe, PrometheusRule.

type serviceMonitorSpec struct {
	ServiceDiscoveryRole string                   `yaml:"serviceDiscoveryRole"`
	Selector             labelSelector            `yaml:"selector"`
	Endpoints            []serviceMonitorEndpoint `yaml:"endpoints"`
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type serviceMonitorEndpoint struct {
	Port   string `yaml:"port"`
	Path   string `yaml:"path"`
	Scheme string `yaml:"scheme"`
}

type scrapeConfigSpec struct {
	MetricsPath   string         `yaml:"metricsPath"`
	Scheme        string         `yaml:"scheme"`
	StaticConfigs []staticConfig `yaml:"staticConfigs"`
}

type staticConfig struct {
	Targets []string          `yaml:"targets"`
	Labels  map[string]string `yaml:"labels,omitempty"`
}

type probeSpec struct {
	JobName       string       `yaml:"jobName"`
	Interval      string       `yaml:"interval"`
	ScrapeTimeout string       `yaml:"scrapeTimeout"`
	Module        string       `yaml:"module"`
	Prober        prober       `yaml:"prober"`
	Targets       probeTargets `yaml:"targets"`
}

type prober struct {
	URL string `yaml:"url"`
}

type probeTargets struct {
	StaticConfig probeStatic `yaml:"staticConfig"`
}

type probeStatic struct {
	Static []string          `yaml:"static"`
	Labels map[string]string `yaml:"labels"`
}

type prometheusRuleSpec struct {
	Groups []ruleGroup `yaml:"groups"`
}

type ruleGroup struct {
	Name  string `yaml:"name"`
	Rules []rule `yaml:"rules"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// gateway.networking.k8s.io: Gateway, HTTPRoute, TLSRoute, TCPRoute, UDPRoute, BackendTLSPolicy.

type gatewaySpec struct {
	GatewayClassName string     `yaml:"gatewayClassName"`
	Listeners        []listener `yaml:"listeners"`
}

type listener struct {
	Name     string       `yaml:"name"`
	Hostname string       `yaml:"hostname,omitempty"`
	Port     int32        `yaml:"port"`
	Protocol string       `yaml:"protocol"`
	TLS      *listenerTLS `yaml:"tls,omitempty"`
}

type listenerTLS struct {
	Mode            string         `yaml:"mode"`
	CertificateRefs []secretObjRef `yaml:"certificateRefs,omitempty"`
}

type secretObjRef struct {
	Name string `yaml:"name"`
}

type parentRef struct {
	Name        string `yaml:"name"`
	SectionName string `yaml:"sectionName"`
}

type backendRef struct {
	Name string `yaml:"name"`
	Port int32  `yaml:"port"`
}

type httpRouteSpec struct {
	ParentRefs []parentRef     `yaml:"parentRefs"`
	Hostnames  []string        `yaml:"hostnames,omitempty"`
	Rules      []httpRouteRule `yaml:"rules"`
}

type httpRouteRule struct {
	Matches     []httpRouteMatch `yaml:"matches,omitempty"`
	Filters     []httpFilter     `yaml:"filters,omitempty"`
	BackendRefs []backendRef     `yaml:"backendRefs,omitempty"`
}

type httpRouteMatch struct {
	Path httpPathMatch `yaml:"path"`
}

type httpPathMatch struct {
	Type  string `yaml:"type"`
	Value string `yaml:"value"`
}

type httpFilter struct {
	Type            string           `yaml:"type"`
	RequestRedirect *requestRedirect `yaml:"requestRedirect,omitempty"`
}

type requestRedirect struct {
	Scheme     string `yaml:"scheme"`
	StatusCode int    `yaml:"statusCode"`
}

type l4RouteSpec struct {
	ParentRefs []parentRef   `yaml:"parentRefs"`
	Hostnames  []string      `yaml:"hostnames,omitempty"`
	Rules      []l4RouteRule `yaml:"rules"`
}

type l4RouteRule struct {
	BackendRefs []backendRef `yaml:"backendRefs"`
}

type backendTLSPolicySpec struct {
	TargetRefs []policyTargetRef  `yaml:"targetRefs"`
	Validation backendTLSValidate `yaml:"validation"`
}

type policyTargetRef struct {
	Group string `yaml:"group"`
	Kind  string `yaml:"kind"`
	Name  string `yaml:"name"`
}

type backendTLSValidate struct {
	WellKnownCACertificates string `yaml:"wellKnownCACertificates"`
	Hostname                string `yaml:"hostname"`
}

// externaldns.k8s.io/v1alpha1 DNSEndpoint.

type dnsEndpointSpec struct {
	Endpoints []dnsEndpoint `yaml:"endpoints"`
}

type dnsEndpoint struct {
	DNSName    string   `yaml:"dnsName"`
	RecordType string   `yaml:"recordType"`
	Targets    []string `yaml:"targets"`
}
