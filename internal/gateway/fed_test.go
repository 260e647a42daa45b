package gateway

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/labgate/labgate/internal/config"
)

// healthCounting answers like startBackend and counts the health checks
// (User-Agent labgate-health) it receives.
func healthCounting(t *testing.T, name string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	echo := echoBackend(name)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.UserAgent() == "labgate-health" {
			n.Add(1)
		}
		echo.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s, &n
}

// A service whose backends' health is fed (by the health monitor, in
// serve) gets no probe from the gateway: SetBackendHealth alone takes a
// backend out of rotation and brings it back, and a new generation starts
// from LastCheck. A service that is not fed keeps the gateway's own probe.
func TestFedBackends(t *testing.T) {
	a, aChecks := healthCounting(t, "a")
	b, bChecks := healthCounting(t, "b")
	c, cChecks := healthCounting(t, "c")
	hc := func() *config.Health {
		return &config.Health{Path: "/healthz", Interval: 20 * time.Millisecond, Timeout: time.Second}
	}
	aName, bName := "http://"+mustURL(t, a.URL).Host, "http://"+mustURL(t, b.URL).Host
	var lastAsked []string
	tg := newTestGatewayWith(t, config.Limits{}, func(o *Options) {
		o.Fed = func(service string) bool { return service == "fed" }
		o.LastCheck = func(service, backend string) (known, passed bool) {
			lastAsked = append(lastAsked, service+" "+backend)
			return backend == bName, false // b was down in the last generation
		}
	},
		&config.Service{Name: "fed", Hosts: []string{"fed.example.com"}, Expose: config.Public, Backends: []*url.URL{mustURL(t, a.URL), mustURL(t, b.URL)}, Health: hc()},
		&config.Service{Name: "probed", Hosts: []string{"probed.example.com"}, Expose: config.Public, Backends: []*url.URL{mustURL(t, c.URL)}, Health: hc()},
	)
	if diff := cmp.Diff([]string{"fed " + aName, "fed " + bName}, lastAsked); diff != "" {
		t.Errorf("LastCheck asked (-want +got):\n%s", diff)
	}
	srv := serveHandler(t, tg.Handler(config.Public))
	cl := newClient(t)
	count := func(host string, n int) map[string]int {
		t.Helper()
		got := map[string]int{}
		for range n {
			r := do(t, cl, "GET", srv.URL+"/", host, nil, nil)
			if r.Status != http.StatusOK {
				t.Fatalf("request to %s: %d %s", host, r.Status, r.Body)
			}
			got[backendOf(t, r)]++
		}
		return got
	}
	up := func(name string) string {
		m := `labgate_backend_up{backend="` + name + `",service="fed"}`
		return strings.TrimPrefix(tg.metric(t, m), m+" ")
	}

	// b starts where the last generation left it: out of rotation.
	if diff := cmp.Diff(map[string]int{"a": 10}, count("fed.example.com", 10)); diff != "" {
		t.Fatalf("b known down (-want +got):\n%s", diff)
	}
	if up(aName) != "1" || up(bName) != "0" {
		t.Errorf("labgate_backend_up a=%s b=%s, want 1 and 0", up(aName), up(bName))
	}
	if strings.Contains(tg.log.String(), "backend down") {
		t.Errorf("a backend known down is logged again by a new generation:\n%s", tg.log)
	}

	runGateway(t, tg.Gateway)
	waitFor(t, "the probe of the service that is not fed", func() bool { return cChecks.Load() >= 5 })
	if na, nb := aChecks.Load(), bChecks.Load(); na != 0 || nb != 0 {
		t.Errorf("the gateway probed fed backends: a %d, b %d times (c: %d)", na, nb, cChecks.Load())
	}

	// A pass brings b back, a failure takes a out.
	tg.SetBackendHealth("fed", bName, nil)
	if diff := cmp.Diff(map[string]int{"a": 5, "b": 5}, count("fed.example.com", 10)); diff != "" {
		t.Fatalf("b passed (-want +got):\n%s", diff)
	}
	tg.SetBackendHealth("fed", aName, errors.New("status 503 (want 2xx or 3xx)"))
	if diff := cmp.Diff(map[string]int{"b": 10}, count("fed.example.com", 10)); diff != "" {
		t.Fatalf("a failed (-want +got):\n%s", diff)
	}
	if up(aName) != "0" || up(bName) != "1" {
		t.Errorf("labgate_backend_up a=%s b=%s, want 0 and 1", up(aName), up(bName))
	}
	logs := tg.log.String()
	if !strings.Contains(logs, `msg="backend up" service=fed backend=`+bName+` why="health check passed"`) ||
		!strings.Contains(logs, `msg="backend down" service=fed backend=`+aName+` why="health check failed" error="status 503`) {
		t.Errorf("transitions not logged:\n%s", logs)
	}
	tg.SetBackendHealth("fed", aName, nil)
	if diff := cmp.Diff(map[string]int{"a": 5, "b": 5}, count("fed.example.com", 10)); diff != "" {
		t.Fatalf("a passed again (-want +got):\n%s", diff)
	}

	// Results for a service the gateway probes itself, or for a backend it
	// does not have, change nothing.
	tg.SetBackendHealth("probed", "http://"+mustURL(t, c.URL).Host, errors.New("ignored"))
	tg.SetBackendHealth("fed", "http://127.0.0.1:1", errors.New("ignored"))
	if diff := cmp.Diff(map[string]int{"c": 3}, count("probed.example.com", 3)); diff != "" {
		t.Fatalf("probed (-want +got):\n%s", diff)
	}
	if na, nb := aChecks.Load(), bChecks.Load(); na != 0 || nb != 0 {
		t.Errorf("the gateway probed fed backends: a %d, b %d times", na, nb)
	}
}
