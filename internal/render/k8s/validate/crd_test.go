package validate

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// crdFiles maps apiVersion/kind to the CRD that defines it: in a module of
// the build ("module:path"), or in testdata. testdata holds external-secrets
// v0.16.2's ExternalSecret CRD, external-dns v0.22.0's DNSEndpoint CRD and
// Argo CD v3.2.0's Application CRD (testdata/README.md): their Go modules
// cannot be had here without a dependency graph the proxy does not serve.
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
	"argoproj.io/v1alpha1/Application":              "testdata/argoproj.io_applications.yaml",
	// Generated from the Go types as prometheus-operator generates its CRDs (see TestMain).
	"monitoring.coreos.com/v1/ServiceMonitor":     "gen:monitoring.coreos.com_servicemonitors.yaml",
	"monitoring.coreos.com/v1/Probe":              "gen:monitoring.coreos.com_probes.yaml",
	"monitoring.coreos.com/v1/PrometheusRule":     "gen:monitoring.coreos.com_prometheusrules.yaml",
	"monitoring.coreos.com/v1alpha1/ScrapeConfig": "gen:monitoring.coreos.com_scrapeconfigs.yaml",
}

// generatedCRDs is where TestMain writes prometheus-operator's CRDs.
var generatedCRDs string

// TestMain generates prometheus-operator's CRDs from the Go types of
// pkg/apis/monitoring v0.95.2 with controller-gen (a tool of this module),
// as the project does for its releases: the repository holding the
// published CRDs is not served here.
func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "labgate-crds-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		mon, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring").Output()
		if err != nil {
			fmt.Fprintln(os.Stderr, "go list -m:", err)
			return 1
		}
		monDir := strings.TrimSpace(string(mon))
		gen := exec.Command("go", "tool", "controller-gen", "crd", "paths="+monDir+"/v1/...", "paths="+monDir+"/v1alpha1/...", "output:crd:dir="+dir)
		if out, err := gen.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "controller-gen: %v\n%s", err, out)
			return 1
		}
		generatedCRDs = dir
		return m.Run()
	}())
}

var (
	crdMu    sync.Mutex
	crdCache = map[string]*crdValidator{}
)

// crdSchemaValidate validates doc as the apiserver validates a custom
// resource of its CRD (see crdValidator).
func crdSchemaValidate(t *testing.T, apiVersion, kind string, doc []byte) error {
	t.Helper()
	src, ok := crdFiles[apiVersion+"/"+kind]
	if !ok {
		return nil
	}
	crdMu.Lock()
	defer crdMu.Unlock()
	key := src + "@" + apiVersion
	v, ok := crdCache[key]
	if !ok {
		path := src
		if rel, ok := strings.CutPrefix(src, "gen:"); ok {
			path = filepath.Join(generatedCRDs, rel)
		} else if mod, rel, ok := strings.Cut(src, ":"); ok {
			out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", mod).Output()
			if err != nil {
				t.Fatalf("go list -m %s: %v", mod, err)
			}
			path = filepath.Join(strings.TrimSpace(string(out)), rel)
		}
		var err error
		if v, err = newCRDValidator(path, apiVersion[strings.LastIndex(apiVersion, "/")+1:]); err != nil {
			t.Fatal(err)
		}
		crdCache[key] = v
	}
	if errs := v.validate(doc); len(errs) > 0 {
		return fmt.Errorf("the apiserver would refuse it (CRD %s): %v", filepath.Base(src), errs.ToAggregate())
	}
	return nil
}
