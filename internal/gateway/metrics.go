package gateway

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/labgate/labgate/internal/config"
)

// Metrics are the gateway's series. They outlive config generations: the
// daemon creates them once and passes them to every New.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	up       *prometheus.GaugeVec
	errors   *prometheus.CounterVec

	mu       sync.Mutex
	backends map[[2]string]bool // the service and backend labels of up
}

// NewMetrics creates the gateway's series and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "labgate_http_requests_total",
			Help: "HTTP requests answered, by service, listener class and status code. Requests for unknown hosts have service=\"\".",
		}, []string{"service", "class", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "labgate_http_request_duration_seconds",
			Help:    "Time from request headers to the end of the response, by service and listener class.",
			Buckets: []float64{.005, .025, .1, .5, 2.5, 10},
		}, []string{"service", "class"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "labgate_backend_up",
			Help: "Whether a backend is taking requests (1) or marked down by a failed health check or request (0).",
		}, []string{"service", "backend"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "labgate_http_backend_errors_total",
			Help: "Failed attempts to get a response from a backend, by reason: dial, timeout, transport, protocol.",
		}, []string{"service", "backend", "reason"}),
	}
	reg.MustRegister(m.requests, m.duration, m.up, m.errors)
	return m
}

// classMetrics are the series of one service (or of unknown hosts) on one
// class, resolved when the generation is built. Status codes are resolved on
// first use and cached, so the hot path does no label lookup.
type classMetrics struct {
	requests *prometheus.CounterVec // curried with service and class
	duration prometheus.Observer
	codes    [600]atomic.Pointer[prometheus.Counter]
}

func (m *Metrics) forService(service string, class config.Class) *classMetrics {
	if m == nil {
		return nil
	}
	l := prometheus.Labels{"service": service, "class": class.String()}
	return &classMetrics{
		requests: m.requests.MustCurryWith(l),
		duration: m.duration.With(l),
	}
}

func (cm *classMetrics) observe(code int, seconds float64) {
	if cm == nil {
		return
	}
	cm.duration.Observe(seconds)
	if code < 0 || code >= len(cm.codes) {
		code = 0
	}
	p := cm.codes[code].Load()
	if p == nil {
		c := cm.requests.WithLabelValues(strconv.Itoa(code))
		p = &c
		cm.codes[code].Store(p)
	}
	(*p).Inc()
}

// error reasons, the values of the reason label.
const (
	reasonDial = iota
	reasonTimeout
	reasonTransport
	reasonProtocol
	numReasons
)

var reasonNames = [numReasons]string{"dial", "timeout", "transport", "protocol"}

// backendMetrics are one backend's series, resolved when it is built.
type backendMetrics struct {
	up     prometheus.Gauge
	errors [numReasons]prometheus.Counter
}

func (m *Metrics) forBackend(service, backend string) backendMetrics {
	var bm backendMetrics
	if m == nil {
		return bm
	}
	m.mu.Lock()
	if m.backends == nil {
		m.backends = map[[2]string]bool{}
	}
	m.backends[[2]string{service, backend}] = true
	bm.up = m.up.WithLabelValues(service, backend)
	m.mu.Unlock()
	for i, r := range reasonNames {
		bm.errors[i] = m.errors.WithLabelValues(service, backend, r)
	}
	return bm
}

// Retain deletes the labgate_backend_up series of every backend that g (the
// generation now serving; nil: none) does not have, so a backend removed
// from the file while down stops reading 0 (and LabgateBackendDown stops
// firing). Call it once g has taken over, after Retire on the generation it
// replaced: a retired generation no longer writes its series, and the
// children it still holds are detached from the vector once deleted, so
// nothing re-creates them.
//
// Counters (requests, durations, backend errors) of removed services and
// backends are kept on purpose: they only grow, rate() over them falls to 0
// by itself, and deleting them would make increase() over a window spanning
// the reload lose the requests counted before it.
func (m *Metrics) Retain(g *Gateway) {
	if m == nil {
		return
	}
	keep := map[[2]string]bool{}
	if g != nil {
		for _, s := range g.services {
			for _, b := range s.backends {
				keep[[2]string{s.cfg.Name, b.name}] = true
			}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.backends {
		if !keep[k] {
			m.up.DeleteLabelValues(k[0], k[1])
			delete(m.backends, k)
		}
	}
}
