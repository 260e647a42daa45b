package certs

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the certificate metrics of an [ACME] source.
type Metrics struct {
	expiry *prometheus.GaugeVec
	events *prometheus.CounterVec
}

// NewMetrics registers the certificate metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		expiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "labgate_cert_expiry_timestamp_seconds",
			Help: "When the certificate served for a name expires (Unix time).",
		}, []string{"name"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "labgate_cert_events_total",
			Help: "Certificates obtained, renewed, or failed to obtain or renew.",
		}, []string{"event"}),
	}
	for _, e := range []EventKind{Obtained, Renewed, Failed} {
		m.events.WithLabelValues(string(e))
	}
	reg.MustRegister(m.expiry, m.events)
	return m
}
