package alert

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	notifications *prometheus.CounterVec
	queueLength   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "labgate_alert_notifications_total",
			Help: "Attempts to deliver an alert, by receiver and result: success, failure (retried later) or dropped (given up).",
		}, []string{"receiver", "result"}),
		queueLength: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "labgate_alert_queue_length",
			Help: "Alert deliveries waiting in the durable queue.",
		}),
	}
	reg.MustRegister(m.notifications, m.queueLength)
	return m
}

func (m *metrics) notification(receiver, result string) {
	if m != nil {
		m.notifications.WithLabelValues(receiver, result).Inc()
	}
}

func (m *metrics) queue(n int) {
	if m != nil {
		m.queueLength.Set(float64(n))
	}
}
