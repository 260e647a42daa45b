package l4

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the layer-4 series. They outlive config generations: the
// daemon creates them once and passes them to every New.
type Metrics struct {
	conns  *prometheus.CounterVec
	active *prometheus.GaugeVec
	bytes  *prometheus.CounterVec
}

// NewMetrics creates the layer-4 series and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "labgate_l4_connections_total",
			Help: "TCP connections on service ports, counted when they end, by service, port and result: " +
				"ok, idle_timeout, error, shutdown (forwarded); backend_down, client_error (bad PROXY header), " +
				"refused (old generation), no_route (service=\"\": nothing on that port for the listener's class).",
		}, []string{"service", "port", "result"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "labgate_l4_active_connections",
			Help: "TCP connections being forwarded to a service's backend.",
		}, []string{"service"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "labgate_l4_bytes_total",
			Help: "Bytes forwarded, by service and direction (in: from clients to the backend, out: to clients), " +
				"added when each direction of a connection ends.",
		}, []string{"service", "direction"}),
	}
	reg.MustRegister(m.conns, m.active, m.bytes)
	return m
}

func (m *Metrics) count(service string, port int, result string) {
	if m != nil {
		m.conns.WithLabelValues(service, strconv.Itoa(port), result).Inc()
	}
}

// routeMetrics are the series of one route, resolved when the generation is
// built. A nil *routeMetrics counts nothing.
type routeMetrics struct {
	conns   *prometheus.CounterVec // curried with service and port
	gauge   prometheus.Gauge
	in, out prometheus.Counter
}

func (m *Metrics) forRoute(service string, port int) *routeMetrics {
	if m == nil {
		return nil
	}
	return &routeMetrics{
		conns: m.conns.MustCurryWith(prometheus.Labels{"service": service, "port": strconv.Itoa(port)}),
		gauge: m.active.WithLabelValues(service),
		in:    m.bytes.WithLabelValues(service, "in"),
		out:   m.bytes.WithLabelValues(service, "out"),
	}
}

func (rm *routeMetrics) count(result string) {
	if rm != nil {
		rm.conns.WithLabelValues(result).Inc()
	}
}

func (rm *routeMetrics) active(d float64) {
	if rm != nil {
		rm.gauge.Add(d)
	}
}

func (rm *routeMetrics) addIn(n int64) {
	if rm != nil && n > 0 {
		rm.in.Add(float64(n))
	}
}

func (rm *routeMetrics) addOut(n int64) {
	if rm != nil && n > 0 {
		rm.out.Add(float64(n))
	}
}
