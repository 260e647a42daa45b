package certs

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the certificate metrics of an [ACME] source.
type Metrics struct {
	expiry *prometheus.GaugeVec
	events *prometheus.CounterVec

	mu    sync.Mutex
	names map[string]bool // the name labels of expiry
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

func (m *Metrics) set(name string, t time.Time) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.names == nil {
		m.names = map[string]bool{}
	}
	m.names[name] = true
	m.expiry.WithLabelValues(name).Set(float64(t.Unix()))
}

func (m *Metrics) forget(name string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.names, name)
	m.expiry.DeleteLabelValues(name)
}

// Retain deletes the expiry series of every name that keep (the source now
// serving; nil: none, tls.acme left the file) does not manage, so a name
// removed from the file, or every name once tls.acme is removed, stops
// being reported (and LabgateCertificateExpiring stops firing for it).
// Retire the replaced source first. The events counter is kept: counters
// only grow, and their history stays meaningful across reloads.
func (m *Metrics) Retain(keep *ACME) {
	if m == nil {
		return
	}
	var want map[string]bool
	if keep != nil {
		want = keep.managedNames()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for n := range m.names {
		if !want[n] {
			delete(m.names, n)
			m.expiry.DeleteLabelValues(n)
		}
	}
}
