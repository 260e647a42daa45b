package k8s

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/labgate/labgate/internal/testpeer"
)

// TestPrometheusRulesWithPromtool checks the rendered PrometheusRules with
// Prometheus's own tool: `promtool check rules` on each rule file (a
// PrometheusRule's spec), and `promtool test rules` to see the alerts fire
// when a service's health probes fail, and stay silent while they pass.
func TestPrometheusRulesWithPromtool(t *testing.T) {
	promtool := testpeer.Need(t, "promtool")
	cfg := load(t, "testdata/lab.yaml")
	objs := decodeAll(t, render(t, cfg, Options{}))
	dir := t.TempDir()
	n := 0
	for _, o := range objs {
		if o["kind"] != "PrometheusRule" {
			continue
		}
		name := o["metadata"].(map[string]any)["name"].(string)
		spec, err := yaml.Marshal(o["spec"])
		if err != nil {
			t.Fatal(err)
		}
		rules := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(rules, spec, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(promtool, "check", "rules", rules).CombinedOutput(); err != nil {
			t.Errorf("promtool check rules %s: %v\n%s\n%s", name, err, out, spec)
		}
		n++
	}
	if n != 2 {
		t.Fatalf("%d PrometheusRules in testdata/lab.yaml's output, want 2 (vaultwarden, blog)", n)
	}

	// blog has three backends, probed every minute: one failing is degraded,
	// all failing is down; vaultwarden's only backend never fails.
	series := func(service, instance, values string) string {
		return fmt.Sprintf("      - series: 'probe_success{job=\"labgate-health\",service=\"%s\",instance=\"%s\"}'\n        values: '%s'\n", service, instance, values)
	}
	test := "rule_files: [blog-health.yaml, vaultwarden-health.yaml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n" +
		series("blog", "a", "1 1 1 1 1 0 0 0 0 0 0 0") +
		series("blog", "b", "1 1 1 1 1 1 1 1 1 0 0 0 0") +
		series("blog", "c", "1 1 1 1 1 1 1 1 1 0 0 0 0") +
		series("vaultwarden", "v", "1 1 1 1 1 1 1 1 1 1 1 1 1") + `
    alert_rule_test:
      - eval_time: 4m
        alertname: LabgateServiceDegraded
      - eval_time: 8m
        alertname: LabgateServiceDegraded
        exp_alerts:
          - exp_labels: {service: blog, severity: warning, receivers: phone}
            exp_annotations: {summary: blog is degraded, description: Some backends of blog do not answer /healthz.}
      - eval_time: 12m
        alertname: LabgateServiceDown
        exp_alerts:
          - exp_labels: {service: blog, severity: critical, receivers: phone}
            exp_annotations: {summary: blog is down, description: No backend of blog answers /healthz.}
      - eval_time: 12m
        alertname: LabgateServiceDegraded
      - eval_time: 10m
        alertname: LabgateServiceDown
`
	testFile := filepath.Join(dir, "test.yaml")
	if err := os.WriteFile(testFile, []byte(test), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promtool, "test", "rules", "test.yaml")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Errorf("promtool test rules: %v\n%s", err, out)
	}
}
