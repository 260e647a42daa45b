package gateway

import (
	"errors"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/labgate/labgate/internal/config"
)

// A generation that took over deletes labgate_backend_up of the backends it
// does not have; the retired one, still draining, writes nothing any more:
// neither the deleted series nor the ones the new generation shares.
func TestRetainBackendUp(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	build := func(names ...string) *Gateway {
		t.Helper()
		var svcs []*config.Service
		for _, n := range names {
			svcs = append(svcs, &config.Service{Name: n, Hosts: []string{n + ".lab.test"}, Path: "/",
				Backends: []*url.URL{mustURL(t, "http://127.0.0.1:1")}})
		}
		g, err := New(&config.Config{Services: svcs}, Options{Metrics: m})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Close)
		return g
	}
	up := func() string {
		rec := httptest.NewRecorder()
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		var out []string
		for l := range strings.Lines(rec.Body.String()) {
			if strings.HasPrefix(l, "labgate_backend_up{") {
				out = append(out, strings.TrimSpace(l))
			}
		}
		return strings.Join(out, "\n")
	}
	old := build("kept", "gone")
	old.services[1].backends[0].markDown(errors.New("refused"))
	want := `labgate_backend_up{backend="http://127.0.0.1:1",service="gone"} 0
labgate_backend_up{backend="http://127.0.0.1:1",service="kept"} 1`
	if got := up(); got != want {
		t.Fatalf("before the reload:\n%s\nwant\n%s", got, want)
	}

	next := build("kept")
	old.Retire()
	m.Retain(next)
	want = `labgate_backend_up{backend="http://127.0.0.1:1",service="kept"} 1`
	if got := up(); got != want {
		t.Fatalf("after the reload:\n%s\nwant\n%s", got, want)
	}
	// The old generation drains: its failed requests change nothing.
	old.services[0].backends[0].markDown(errors.New("refused"))
	old.services[1].backends[0].report(true, "check passed", nil)
	if got := up(); got != want {
		t.Errorf("after the old generation reported:\n%s\nwant\n%s", got, want)
	}

	m.Retain(nil) // no gateway serves any more
	if got := up(); got != "" {
		t.Errorf("without a gateway:\n%s", got)
	}
}
