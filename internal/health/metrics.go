package health

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	state    *prometheus.GaugeVec
	success  *prometheus.GaugeVec
	duration *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "labgate_service_state",
			Help: "1 for the current state of a service (up, down, degraded or unknown), 0 for the others.",
		}, []string{"service", "state"}),
		success: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "labgate_check_success",
			Help: "Whether the last run of a check passed (1) or failed (0), by scope: inside (to the backend) or outside (through the relay). The relay path has service=\"\".",
		}, []string{"service", "check", "scope"}),
		duration: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "labgate_check_duration_seconds",
			Help: "How long the last run of a check took.",
		}, []string{"service", "check", "scope"}),
	}
	reg.MustRegister(m.state, m.success, m.duration)
	return m
}

func (m *metrics) observe(r Result) {
	if m == nil {
		return
	}
	ok := 0.0
	if r.State != Down {
		ok = 1
	}
	m.success.WithLabelValues(r.Service, r.Check, string(r.Scope)).Set(ok)
	m.duration.WithLabelValues(r.Service, r.Check, string(r.Scope)).Set(r.Latency.Seconds())
}

func (m *metrics) serviceState(service string, s State) {
	if m == nil {
		return
	}
	for i, name := range stateNames {
		v := 0.0
		if State(i) == s {
			v = 1
		}
		m.state.WithLabelValues(service, name).Set(v)
	}
}

func (m *metrics) forget(t Target) {
	if m == nil {
		return
	}
	m.success.DeleteLabelValues(t.Service, t.Check, string(t.Scope))
	m.duration.DeleteLabelValues(t.Service, t.Check, string(t.Scope))
}

func (m *metrics) forgetService(service string) {
	if m == nil {
		return
	}
	m.state.DeletePartialMatch(prometheus.Labels{"service": service})
}
