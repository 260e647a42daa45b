package daemon

import (
	"errors"
	"log/slog"
	"net/http"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/labgate/labgate/internal/config"
)

// metrics are the daemon's own series: reloads and build information.
type metrics struct {
	reloadOK   prometheus.Gauge
	reloadTime prometheus.Gauge
	reloads    *prometheus.CounterVec
	generation prometheus.Gauge
	refused    *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry, version string) *metrics {
	m := &metrics{
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "labgate_config_last_reload_successful",
			Help: "Whether the last attempt to load the config succeeded (1) or was refused (0).",
		}),
		reloadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "labgate_config_last_reload_success_timestamp_seconds",
			Help: "When a config was last applied, in seconds since the epoch.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "labgate_config_reloads_total",
			Help: "Reload attempts by result: success, failure (the old config keeps serving) or unchanged.",
		}, []string{"result"}),
		generation: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "labgate_config_generation",
			Help: "Number of config generations applied since start.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "labgate_listener_refused_total",
			Help: "Connections refused before any request, by listener class and reason (not_allowed, no_header, invalid_header, timeout, read_error).",
		}, []string{"class", "reason"}),
	}
	for _, r := range []string{"success", "failure", "unchanged"} {
		m.reloads.WithLabelValues(r)
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "labgate_build_info",
		Help:        "Always 1; labels describe the running build.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	build.Set(1)
	reg.MustRegister(m.reloadOK, m.reloadTime, m.reloads, m.generation, m.refused, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// refusedBy returns the refusal counter callback for listeners of a class.
func (m *metrics) refusedBy(class config.Class) func(reason string) {
	c := m.refused.MustCurryWith(prometheus.Labels{"class": class.String()})
	return func(reason string) { c.WithLabelValues(reason).Inc() }
}

// reloadFailed counts a refused reload and logs each problem, saying what
// keeps going ("serving the previous one").
func (m *metrics) reloadFailed(log *slog.Logger, err error, still string) {
	m.reloadOK.Set(0)
	m.reloads.WithLabelValues("failure").Inc()
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			log.Error("config refused, still "+still, "error", e.Error())
		}
		return
	}
	log.Error("reload failed, still "+still, "error", err)
}
