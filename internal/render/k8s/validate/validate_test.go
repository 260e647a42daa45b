// Package validate proves that what labgate renders is what a cluster
// accepts: every object of the golden files is decoded strictly (unknown
// fields are errors) into the official Go types of its kind, and the kinds
// the apiserver itself serves (Service, EndpointSlice, Ingress, ConfigMap)
// pass the apiserver's own validation code, after the same defaulting.
// Custom resources (Gateway API, cert-manager, prometheus-operator, External
// Secrets, ExternalDNS) pass what the apiserver runs for their CRD: pruning
// with unknown fields refused, defaulting, the OpenAPI schema and the CEL
// rules (k8s.io/apiextensions-apiserver).
//
// It is a module of its own: k8s.io/kubernetes needs replace lines and a
// large dependency graph that labgate's binary never sees.
package validate

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monitoringv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/kubernetes/pkg/api/legacyscheme"
	"k8s.io/kubernetes/pkg/apis/core"
	_ "k8s.io/kubernetes/pkg/apis/core/install"
	corevalidation "k8s.io/kubernetes/pkg/apis/core/validation"
	"k8s.io/kubernetes/pkg/apis/discovery"
	_ "k8s.io/kubernetes/pkg/apis/discovery/install"
	discoveryvalidation "k8s.io/kubernetes/pkg/apis/discovery/validation"
	"k8s.io/kubernetes/pkg/apis/networking"
	_ "k8s.io/kubernetes/pkg/apis/networking/install"
	networkingvalidation "k8s.io/kubernetes/pkg/apis/networking/validation"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"
)

// newObject returns an empty value of the official type for apiVersion/kind.
func newObject(apiVersion, kind string) (any, bool) {
	switch apiVersion + "/" + kind {
	case "v1/Service":
		return &corev1.Service{}, true
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, true
	case "discovery.k8s.io/v1/EndpointSlice":
		return &discoveryv1.EndpointSlice{}, true
	case "networking.k8s.io/v1/Ingress":
		return &networkingv1.Ingress{}, true
	case "cert-manager.io/v1/Certificate":
		return &certmanagerv1.Certificate{}, true
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}, true
	case "monitoring.coreos.com/v1/Probe":
		return &monitoringv1.Probe{}, true
	case "monitoring.coreos.com/v1/PrometheusRule":
		return &monitoringv1.PrometheusRule{}, true
	case "monitoring.coreos.com/v1alpha1/ScrapeConfig":
		return &monitoringv1alpha1.ScrapeConfig{}, true
	case "gateway.networking.k8s.io/v1/Gateway":
		return &gatewayv1.Gateway{}, true
	case "gateway.networking.k8s.io/v1/HTTPRoute":
		return &gatewayv1.HTTPRoute{}, true
	case "gateway.networking.k8s.io/v1/TLSRoute":
		return &gatewayv1.TLSRoute{}, true
	case "gateway.networking.k8s.io/v1/TCPRoute":
		return &gatewayv1.TCPRoute{}, true
	case "gateway.networking.k8s.io/v1/UDPRoute":
		return &gatewayv1.UDPRoute{}, true
	case "gateway.networking.k8s.io/v1/BackendTLSPolicy":
		return &gatewayv1.BackendTLSPolicy{}, true
	}
	return nil, false
}

// documents splits a YAML stream on its --- lines.
func documents(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(data, []byte("\n---\n")) {
		if len(bytes.TrimSpace(d)) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

func goldenFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../testdata/golden/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files in ../testdata/golden (%v)", err)
	}
	return append(files, "../testdata/seed/longhorn-private.yaml", "../testdata/seed/longhorn-public.yaml")
}

// TestGoldenObjects decodes and validates every rendered object.
func TestGoldenObjects(t *testing.T) {
	kinds := map[string]int{}
	for _, f := range goldenFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range documents(data) {
			var tm struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Errorf("%s: document %d: %v", f, i, err)
				continue
			}
			where := fmt.Sprintf("%s: %s %s", filepath.Base(f), tm.Kind, tm.Metadata.Name)
			obj, ok := newObject(tm.APIVersion, tm.Kind)
			if !ok {
				if _, ok := crdFiles[tm.APIVersion+"/"+tm.Kind]; ok {
					// No Go type here: the CRD's schema, strictly, is the check.
					if err := crdSchemaValidate(t, tm.APIVersion, tm.Kind, doc); err != nil {
						t.Errorf("%s: %v", where, err)
					}
					kinds[tm.Kind]++
					continue
				}
				t.Errorf("%s: no Go type known for %s %s", where, tm.APIVersion, tm.Kind)
				continue
			}
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Errorf("%s: strict decoding into %T: %v", where, obj, err)
				continue
			}
			// Reading back what was decoded must give the same object: no
			// value was dropped or changed on the way into the type.
			back, err := yaml.Marshal(obj)
			if err != nil {
				t.Fatal(err)
			}
			if !sameJSON(t, doc, back) {
				t.Errorf("%s: the object does not survive a round trip through %T:\n%s\n---- became\n%s", where, obj, doc, back)
			}
			if errs := apiserverValidate(obj); len(errs) > 0 {
				t.Errorf("%s: the apiserver would refuse it: %v", where, errs.ToAggregate())
			}
			if err := crdSchemaValidate(t, tm.APIVersion, tm.Kind, doc); err != nil {
				t.Errorf("%s: %v", where, err)
			}
			kinds[tm.Kind]++
		}
	}
	t.Logf("objects checked by kind: %v", kinds)
	for _, k := range []string{"Service", "EndpointSlice", "Ingress", "ConfigMap", "Certificate", "ExternalSecret",
		"DNSEndpoint", "ServiceMonitor", "ScrapeConfig", "Probe", "PrometheusRule", "Gateway", "HTTPRoute", "TLSRoute", "TCPRoute", "UDPRoute", "BackendTLSPolicy"} {
		if kinds[k] == 0 {
			t.Errorf("no %s in the golden files: the examples no longer cover it", k)
		}
	}
}

// apiserverValidate runs what the apiserver runs on create for the kinds it
// serves itself: defaulting, conversion to the internal type, validation.
func apiserverValidate(obj any) field.ErrorList {
	ro, ok := obj.(runtime.Object)
	if !ok {
		return nil
	}
	// The apiserver takes the namespace from the request when the object has none.
	if m, ok := obj.(interface {
		GetNamespace() string
		SetNamespace(string)
	}); ok && m.GetNamespace() == "" {
		m.SetNamespace("default")
	}
	var internal runtime.Object
	switch ro.(type) {
	case *corev1.Service:
		internal = &core.Service{}
	case *corev1.ConfigMap:
		internal = &core.ConfigMap{}
	case *discoveryv1.EndpointSlice:
		internal = &discovery.EndpointSlice{}
	case *networkingv1.Ingress:
		internal = &networking.Ingress{}
	default:
		return nil
	}
	ro = ro.DeepCopyObject()
	legacyscheme.Scheme.Default(ro)
	if err := legacyscheme.Scheme.Convert(ro, internal, nil); err != nil {
		return field.ErrorList{field.InternalError(nil, err)}
	}
	switch o := internal.(type) {
	case *core.Service:
		// The service REST storage allocates cluster IPs before validating;
		// a selector-less or ExternalName Service needs none to be valid.
		if o.Spec.Type == core.ServiceTypeClusterIP && len(o.Spec.ClusterIPs) == 0 {
			o.Spec.ClusterIP, o.Spec.ClusterIPs = "10.43.0.10", []string{"10.43.0.10"}
			o.Spec.IPFamilies = []core.IPFamily{core.IPv4Protocol}
			single := core.IPFamilyPolicySingleStack
			o.Spec.IPFamilyPolicy = &single
		}
		return corevalidation.ValidateServiceCreate(o)
	case *core.ConfigMap:
		return corevalidation.ValidateConfigMap(o)
	case *discovery.EndpointSlice:
		return discoveryvalidation.ValidateEndpointSliceCreate(o)
	case *networking.Ingress:
		return networkingvalidation.ValidateIngressCreate(o)
	}
	return nil
}

// sameJSON reports whether every value of a is in b: the Go types add zero
// values on the way out (creationTimestamp: null, status: {}), but must not
// lose or change one.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := yaml.Unmarshal(a, &va); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &vb); err != nil {
		t.Fatal(err)
	}
	return subset(va, vb)
}

func subset(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			return false
		}
		for k, v := range x {
			if !subset(v, y[k]) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !subset(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return a == b
}
