package validate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"
)

// crdFiles maps apiVersion/kind to the CRD that defines it: in a module of
// the build ("module:path"), or in testdata. testdata holds external-secrets
// v0.16.2's ExternalSecret CRD (config/crds/bases) and external-dns v0.22.0's
// DNSEndpoint CRD (config/crd/standard): their Go modules cannot be had here
// without a dependency graph the proxy does not fully serve.
var crdFiles = map[string]string{
	"gateway.networking.k8s.io/v1/Gateway":          "sigs.k8s.io/gateway-api:config/crd/standard/gateway.networking.k8s.io_gateways.yaml",
	"gateway.networking.k8s.io/v1/HTTPRoute":        "sigs.k8s.io/gateway-api:config/crd/standard/gateway.networking.k8s.io_httproutes.yaml",
	"gateway.networking.k8s.io/v1/TLSRoute":         "sigs.k8s.io/gateway-api:config/crd/standard/gateway.networking.k8s.io_tlsroutes.yaml",
	"gateway.networking.k8s.io/v1/TCPRoute":         "sigs.k8s.io/gateway-api:config/crd/standard/gateway.networking.k8s.io_tcproutes.yaml",
	"gateway.networking.k8s.io/v1/UDPRoute":         "sigs.k8s.io/gateway-api:config/crd/standard/gateway.networking.k8s.io_udproutes.yaml",
	"gateway.networking.k8s.io/v1/BackendTLSPolicy": "sigs.k8s.io/gateway-api:config/crd/standard/gateway.networking.k8s.io_backendtlspolicies.yaml",
	"cert-manager.io/v1/Certificate":                "github.com/cert-manager/cert-manager:deploy/crds/cert-manager.io_certificates.yaml",
	"external-secrets.io/v1/ExternalSecret":         "testdata/external-secrets.io_externalsecrets.yaml",
	"externaldns.k8s.io/v1alpha1/DNSEndpoint":       "testdata/dnsendpoints.externaldns.k8s.io.yaml",
}

var (
	schemaMu    sync.Mutex
	schemaCache = map[string]*jsonschema.Schema{}
)

// crdSchemaValidate checks doc against the OpenAPI schema of its CRD, as
// kubeconform -strict does: unknown fields are errors. (CEL rules of the CRD,
// x-kubernetes-validations, are not evaluated.)
func crdSchemaValidate(t *testing.T, apiVersion, kind string, doc []byte) error {
	t.Helper()
	src, ok := crdFiles[apiVersion+"/"+kind]
	if !ok {
		return nil
	}
	s, err := crdSchema(src, apiVersion)
	if err != nil {
		t.Fatalf("schema of %s: %v", kind, err)
	}
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		return err
	}
	if err := s.Validate(v); err != nil {
		return fmt.Errorf("the CRD's schema refuses it: %v", err)
	}
	return nil
}

func crdSchema(src, apiVersion string) (*jsonschema.Schema, error) {
	schemaMu.Lock()
	defer schemaMu.Unlock()
	key := src + "@" + apiVersion
	if s, ok := schemaCache[key]; ok {
		return s, nil
	}
	path := src
	if mod, rel, ok := strings.Cut(src, ":"); ok {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", mod).Output()
		if err != nil {
			return nil, fmt.Errorf("go list -m %s: %v", mod, err)
		}
		path = filepath.Join(strings.TrimSpace(string(out)), rel)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var crd struct {
		Spec struct {
			Versions []struct {
				Name   string `json:"name"`
				Schema struct {
					OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &crd); err != nil {
		return nil, err
	}
	version := apiVersion[strings.LastIndex(apiVersion, "/")+1:]
	for _, v := range crd.Spec.Versions {
		if v.Name != version {
			continue
		}
		schema := v.Schema.OpenAPIV3Schema
		strict(schema)
		b, err := json.Marshal(schema)
		if err != nil {
			return nil, err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		c := jsonschema.NewCompiler()
		if err := c.AddResource("crd.json", doc); err != nil {
			return nil, err
		}
		s, err := c.Compile("crd.json")
		if err != nil {
			return nil, err
		}
		schemaCache[key] = s
		return s, nil
	}
	return nil, fmt.Errorf("%s defines no version %s", path, version)
}

// strict turns an OpenAPI schema into a JSON Schema that refuses unknown
// fields, and drops the Kubernetes extensions JSON Schema does not know.
func strict(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k := range x {
			if strings.HasPrefix(k, "x-kubernetes-") {
				if k == "x-kubernetes-int-or-string" {
					delete(x, "type")
				}
				delete(x, k)
			}
		}
		if _, ok := x["properties"]; ok {
			if _, ok := x["additionalProperties"]; !ok {
				x["additionalProperties"] = false
			}
		}
		if x["nullable"] == true {
			if t, ok := x["type"].(string); ok {
				x["type"] = []any{t, "null"}
			}
		}
		delete(x, "nullable")
		for _, c := range x {
			strict(c)
		}
	case []any:
		for _, c := range x {
			strict(c)
		}
	}
}
