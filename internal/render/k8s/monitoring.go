package k8s

import (
	"fmt"
	"strings"
	"time"
)

// healthJob is the job label of the health Probes' series.
const healthJob = "labgate-health"

// monitoring renders how prometheus-operator watches a service: its metrics
// through a ServiceMonitor (a rendered selector-less Service, discovered by
// EndpointSlice) or a ScrapeConfig (static targets), and its health check as
// a blackbox Probe with a PrometheusRule that alerts when it fails.
func (m *model) monitoring(mon *monitor) []object {
	var objs []object
	if mon.metricsPath != "" {
		if mon.serviceScrape != "" {
			o, _ := m.spec("monitoring.coreos.com/v1", "ServiceMonitor", mon.service, serviceMonitorSpec{
				ServiceDiscoveryRole: "EndpointSlice",
				Selector:             labelSelector{MatchLabels: map[string]string{labelManagedBy: managedBy, labelInstance: mon.serviceScrape}},
				Endpoints:            []serviceMonitorEndpoint{{Port: mon.scheme, Path: mon.metricsPath, Scheme: mon.scheme}},
			})
			objs = append(objs, o)
		} else {
			o, _ := m.spec("monitoring.coreos.com/v1alpha1", "ScrapeConfig", mon.service, scrapeConfigSpec{
				MetricsPath:   mon.metricsPath,
				Scheme:        strings.ToUpper(mon.scheme),
				StaticConfigs: []staticConfig{{Targets: mon.targets, Labels: map[string]string{"service": mon.service}}},
			})
			objs = append(objs, o)
		}
	}
	if h := mon.health; h != nil {
		name := mon.service + "-health"
		o, _ := m.spec("monitoring.coreos.com/v1", "Probe", name, probeSpec{
			JobName:       healthJob,
			Interval:      promDuration(h.Interval),
			ScrapeTimeout: promDuration(h.Timeout),
			Module:        "http_2xx",
			Prober:        prober{URL: m.names.BlackboxExporter},
			Targets:       probeTargets{StaticConfig: probeStatic{Static: mon.probeURLs, Labels: map[string]string{"service": mon.service}}},
		})
		objs = append(objs, o)
		sel := fmt.Sprintf(`probe_success{job=%q,service=%q}`, healthJob, mon.service)
		ruleLabels := func(severity string) map[string]string {
			l := map[string]string{"service": mon.service, "severity": severity}
			if len(mon.alert) > 0 {
				// Alertmanager routes match it: receivers=~"(.*,)?phone(,.*)?"
				l["receivers"] = strings.Join(mon.alert, ",")
			}
			return l
		}
		rules := []rule{{
			Alert:  "LabgateServiceDown",
			Expr:   fmt.Sprintf("max(%s) == 0", sel),
			For:    promDuration(2 * h.Interval),
			Labels: ruleLabels("critical"),
			Annotations: map[string]string{
				"summary":     mon.service + " is down",
				"description": fmt.Sprintf("No backend of %s answers %s.", mon.service, h.Path),
			},
		}}
		if len(mon.probeURLs) > 1 {
			rules = append(rules, rule{
				Alert:  "LabgateServiceDegraded",
				Expr:   fmt.Sprintf("min(%s) == 0 and max(%s) == 1", sel, sel),
				For:    promDuration(2 * h.Interval),
				Labels: ruleLabels("warning"),
				Annotations: map[string]string{
					"summary":     mon.service + " is degraded",
					"description": fmt.Sprintf("Some backends of %s do not answer %s.", mon.service, h.Path),
				},
			})
		}
		o, _ = m.spec("monitoring.coreos.com/v1", "PrometheusRule", name, prometheusRuleSpec{
			Groups: []ruleGroup{{Name: "labgate." + mon.service, Rules: rules}},
		})
		objs = append(objs, o)
	}
	return objs
}

// promDuration writes d as Prometheus does: 1h30m, 45s, 500ms.
func promDuration(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		unit string
		d    time.Duration
	}{{"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}} {
		if n := d / u.d; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.unit)
			d -= n * u.d
		}
	}
	return b.String()
}
