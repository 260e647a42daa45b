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

	udpDatagrams *prometheus.CounterVec
	udpFlows     *prometheus.GaugeVec
	udpDropped   map[string]prometheus.Counter // by reason, all created up front
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
	m.udpDatagrams = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "labgate_l4_udp_datagrams_total",
		Help: "UDP datagrams forwarded on service ports, by service, port and direction " +
			"(in: from clients to the backend, out: from the backend to clients).",
	}, []string{"service", "port", "direction"})
	m.udpFlows = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "labgate_l4_udp_flows",
		Help: "UDP flows (one per client, each with its own socket to the backend) being forwarded, by service.",
	}, []string{"service"})
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "labgate_l4_udp_dropped_total",
		Help: "UDP datagrams not forwarded, by reason: untrusted (public socket, source not a trusted relay), " +
			"not_allowed (private socket, source outside gateway.private.allow), no_header and invalid_header " +
			"(from a trusted relay without a valid PROXY v2 UDP header), probe (the relay's LOCAL health probes), " +
			"no_route, closed (no generation takes new flows), flow_limit, backend_error (dialing or writing to the backend), " +
			"reply_error (sending a reply to the client or relay).",
	}, []string{"reason"})
	m.udpDropped = map[string]prometheus.Counter{}
	for _, r := range udpDropReasons {
		m.udpDropped[r] = dropped.WithLabelValues(r)
	}
	reg.MustRegister(m.conns, m.active, m.bytes, m.udpDatagrams, m.udpFlows, dropped)
	return m
}

// drop counts a UDP datagram that was not forwarded.
func (m *Metrics) drop(reason string) {
	if m != nil {
		m.udpDropped[reason].Inc()
	}
}

// udpRouteMetrics are the series of one udp route. A nil one counts nothing.
type udpRouteMetrics struct {
	in, out prometheus.Counter
	flows   prometheus.Gauge
}

func (m *Metrics) forUDPRoute(service string, port int) *udpRouteMetrics {
	if m == nil {
		return nil
	}
	p := strconv.Itoa(port)
	return &udpRouteMetrics{
		in:    m.udpDatagrams.WithLabelValues(service, p, "in"),
		out:   m.udpDatagrams.WithLabelValues(service, p, "out"),
		flows: m.udpFlows.WithLabelValues(service),
	}
}

func (um *udpRouteMetrics) datagramIn() {
	if um != nil {
		um.in.Inc()
	}
}

func (um *udpRouteMetrics) datagramOut() {
	if um != nil {
		um.out.Inc()
	}
}

func (um *udpRouteMetrics) flow(d float64) {
	if um != nil {
		um.flows.Add(d)
	}
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
