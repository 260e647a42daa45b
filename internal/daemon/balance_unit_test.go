package daemon

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/gateway"
)

// A generation starts from the last result of each backend; results that
// arrive between its build and its start are applied when it starts; the
// results of backends it no longer balances by checks are forgotten.
func TestBalancingAcrossGenerations(t *testing.T) {
	cfg, err := config.Parse("lab.yaml", []byte(`version: 1
domain: lab.test
services:
  - { name: app, host: app, backends: ["http://127.0.0.1:8001", "http://127.0.0.1:8002", "http://127.0.0.1:8003"], health: { path: /healthz } }
  - { name: plain, host: plain, backend: "http://127.0.0.1:8004" }
  - { name: tcponly, host: tcponly, backend: "http://127.0.0.1:8005", health: { checks: [{ type: tcp }] } }
`), config.Options{Getenv: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatal(err)
	}
	lb := newBalancing()
	broken := errors.New("status 503")
	lb.observe("app", "http://127.0.0.1:8001", broken)
	lb.observe("app", "http://127.0.0.1:8002", nil)
	lb.observe("removed", "http://127.0.0.1:9000", broken)
	if got := fed(cfg); !got("app") || got("plain") || got("tcponly") {
		t.Errorf("fed: app %v, plain %v, tcponly %v; want only app", got("app"), got("plain"), got("tcponly"))
	}
	gw, err := gateway.New(cfg, gateway.Options{Fed: fed(cfg), LastCheck: lb.lastCheck})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	up := func() map[string]bool {
		out := map[string]bool{}
		for _, b := range gw.Backends() {
			out[b.Service+" "+b.Backend] = b.Up
		}
		return out
	}
	want := map[string]bool{"app http://127.0.0.1:8001": false, "app http://127.0.0.1:8002": true, "app http://127.0.0.1:8003": true,
		"plain http://127.0.0.1:8004": true, "tcponly http://127.0.0.1:8005": true}
	if diff := cmp.Diff(want, up()); diff != "" {
		t.Errorf("as built (-want +got):\n%s", diff)
	}

	// Before the generation serves, a result goes to the one that serves
	// (none here) and is kept; use applies it.
	lb.observe("app", "http://127.0.0.1:8003", broken)
	if up()["app http://127.0.0.1:8003"] != true {
		t.Error("a result reached a generation before it serves")
	}
	lb.use(gw, cfg)
	want["app http://127.0.0.1:8003"] = false
	if diff := cmp.Diff(want, up()); diff != "" {
		t.Errorf("in use (-want +got):\n%s", diff)
	}
	if known, _ := lb.lastCheck("removed", "http://127.0.0.1:9000"); known {
		t.Error("the result of a backend no longer in the file is kept")
	}
	// A check of a dropped service ends after the reload: its last result
	// is not kept.
	lb.observe("removed", "http://127.0.0.1:9000", broken)
	if known, _ := lb.lastCheck("removed", "http://127.0.0.1:9000"); known {
		t.Error("a result of a backend no longer in the file, arriving after the reload, is kept")
	}
	lb.observe("app", "http://127.0.0.1:8001", nil)
	want["app http://127.0.0.1:8001"] = true
	if diff := cmp.Diff(want, up()); diff != "" {
		t.Errorf("after a pass (-want +got):\n%s", diff)
	}
}
