package speedtest

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the relay path series. They outlive Probers: a daemon
// registers them once and hands them to every Prober it starts.
type Metrics struct {
	rtt         *prometheus.GaugeVec // no labels: absent until a first success
	throughput  *prometheus.GaugeVec
	lastRun     prometheus.Gauge
	lastSuccess prometheus.Gauge
	runs        *prometheus.CounterVec
	bytes       prometheus.Counter
}

// NewMetrics registers the relay path series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		rtt: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "labgate_relay_path_rtt_seconds",
			Help: "Median round trip from the gateway to the relay and back over the VPN, in the last successful measurement.",
		}, nil),
		throughput: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "labgate_relay_path_throughput_bytes_per_second",
			Help: "Throughput between the gateway and the relay in the last successful measurement: down is relay to gateway, up is gateway to relay.",
		}, []string{"direction"}),
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "labgate_relay_path_last_run_timestamp_seconds",
			Help: "When the relay path was last measured, successfully or not, in seconds since the epoch.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "labgate_relay_path_last_success_timestamp_seconds",
			Help: "When the relay path was last measured successfully, in seconds since the epoch.",
		}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "labgate_relay_path_runs_total",
			Help: "Measurements of the relay path, by result (success or failure).",
		}, []string{"result"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "labgate_relay_path_bytes_total",
			Help: "Payload bytes moved to measure the relay path, both ways: the budget spent.",
		}),
	}
	for _, r := range []string{"success", "failure"} {
		m.runs.WithLabelValues(r)
	}
	reg.MustRegister(m.rtt, m.throughput, m.lastRun, m.lastSuccess, m.runs, m.bytes)
	return m
}

// observe exports a new result.
func (m *Metrics) observe(r Result) {
	result := "success"
	if !r.OK() {
		result = "failure"
	}
	m.runs.WithLabelValues(result).Inc()
	m.bytes.Add(float64(r.Bytes))
	m.lastRun.Set(seconds(r))
	if r.OK() {
		m.setGauges(r)
	}
}

// restore sets the gauges from a history loaded at start, whose runs an
// earlier process counted.
func (m *Metrics) restore(h []Result) {
	if len(h) > 0 {
		m.lastRun.Set(seconds(h[len(h)-1]))
	}
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].OK() {
			m.setGauges(h[i])
			return
		}
	}
}

func (m *Metrics) setGauges(r Result) {
	m.rtt.WithLabelValues().Set(r.RTT)
	m.throughput.WithLabelValues("down").Set(r.Down)
	m.throughput.WithLabelValues("up").Set(r.Up)
	m.lastSuccess.Set(seconds(r))
}

func seconds(r Result) float64 { return float64(r.Time.UnixNano()) / 1e9 }
