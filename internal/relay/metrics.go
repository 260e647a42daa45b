package relay

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Connection results, the result label of labgate_relay_connections_total.
const (
	ResultForwarded = "forwarded" // dialed the gateway and sent the PROXY header (TCP), or a new UDP flow
	ResultRefused   = "refused"   // over a limit: closed (TCP) or dropped (UDP) without contacting the gateway
	ResultFailed    = "failed"    // the gateway could not be reached or the header not written
)

// Error reasons, the reason label of labgate_relay_errors_total.
const (
	ReasonSourceLimit    = "source_limit"    // MaxConnsPerSource reached
	ReasonFlowLimit      = "flow_limit"      // UDPMaxFlows reached
	ReasonConnectRefused = "connect_refused" // the gateway refused the connection
	ReasonConnectTimeout = "connect_timeout" // no answer from the gateway in time
	ReasonConnect        = "connect_error"   // any other dial failure
	ReasonHeader         = "header_write"    // writing the PROXY header failed
	ReasonReset          = "reset"           // a side reset the connection mid-stream
	ReasonIdle           = "idle_timeout"    // closed after IdleTimeout without traffic
	ReasonUDPWrite       = "udp_write"       // a datagram could not be sent
)

// Directions, the direction label of labgate_relay_bytes_total.
const (
	DirToGateway = "to_gateway" // from the client to the gateway (PROXY headers not counted)
	DirToClient  = "to_client"  // from the gateway back to the client
)

// Metrics are the relay's Prometheus series. One Metrics outlives reloads:
// create it once and pass it to every Options.
type Metrics struct {
	conns     *prometheus.CounterVec
	active    *prometheus.GaugeVec
	bytes     *prometheus.CounterVec
	errors    *prometheus.CounterVec
	flows     *prometheus.GaugeVec
	gatewayUp *prometheus.GaugeVec
}

// NewMetrics creates the relay's series and registers them with reg (none if
// reg is nil):
//
//	labgate_relay_connections_total{route,result}
//	labgate_relay_active_connections{route}
//	labgate_relay_bytes_total{route,direction}
//	labgate_relay_errors_total{route,reason}
//	labgate_relay_udp_flows{route}
//	labgate_relay_gateway_up{target}
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "labgate_relay_connections_total",
			Help: "Accepted TCP connections and new UDP flows by route and result (forwarded, refused, failed).",
		}, []string{"route", "result"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "labgate_relay_active_connections",
			Help: "TCP connections being relayed, by route.",
		}, []string{"route"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "labgate_relay_bytes_total",
			Help: "Payload bytes relayed by route and direction (to_gateway, to_client); TCP bytes are counted when each direction ends.",
		}, []string{"route", "direction"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "labgate_relay_errors_total",
			Help: "Refusals, failures and abnormal ends by route and reason.",
		}, []string{"route", "reason"}),
		flows: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "labgate_relay_udp_flows",
			Help: "UDP flows (client address and port) being relayed, by route.",
		}, []string{"route"}),
		gatewayUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "labgate_relay_gateway_up",
			Help: "Whether the last probe of a gateway address (PROXY v2 LOCAL, then an HTTP HEAD) got an HTTP answer.",
		}, []string{"target"}),
	}
	if reg != nil {
		reg.MustRegister(m.conns, m.active, m.bytes, m.errors, m.flows, m.gatewayUp)
	}
	return m
}

// routeMetrics are one route's series, resolved once per configuration so
// that the per-connection path does no label lookups.
type routeMetrics struct {
	forwarded, refused, failed prometheus.Counter
	active                     prometheus.Gauge
	toGateway, toClient        prometheus.Counter
	flows                      prometheus.Gauge
	errs                       map[string]prometheus.Counter // fixed at creation: read-only
}

func (m *Metrics) route(name string) *routeMetrics {
	rm := &routeMetrics{
		forwarded: m.conns.WithLabelValues(name, ResultForwarded),
		refused:   m.conns.WithLabelValues(name, ResultRefused),
		failed:    m.conns.WithLabelValues(name, ResultFailed),
		active:    m.active.WithLabelValues(name),
		toGateway: m.bytes.WithLabelValues(name, DirToGateway),
		toClient:  m.bytes.WithLabelValues(name, DirToClient),
		flows:     m.flows.WithLabelValues(name),
		errs:      make(map[string]prometheus.Counter),
	}
	for _, r := range []string{ReasonSourceLimit, ReasonFlowLimit, ReasonConnectRefused, ReasonConnectTimeout,
		ReasonConnect, ReasonHeader, ReasonReset, ReasonIdle, ReasonUDPWrite} {
		rm.errs[r] = m.errors.WithLabelValues(name, r)
	}
	return rm
}

func (rm *routeMetrics) err(reason string) { rm.errs[reason].Inc() }
