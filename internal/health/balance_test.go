package health

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/labgate/labgate/internal/config"
)

// An http check tells its observer each URL's own outcome: a failing
// backend fails alone, and one that hangs does not fail the others (they
// are requested at the same time, each within the whole timeout).
func TestHTTPCheckObserve(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
		case "/hang":
			select {
			case <-r.Context().Done():
			case <-release:
			}
		default:
			http.Error(w, "broken", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	defer close(release)
	var mu sync.Mutex
	got := map[string]string{}
	c := &HTTPCheck{
		URLs: []*url.URL{mustURL(t, srv.URL+"/hang"), mustURL(t, srv.URL+"/ok"), mustURL(t, srv.URL+"/broken")},
		Observe: func(u *url.URL, err error) {
			mu.Lock()
			defer mu.Unlock()
			got[u.Path] = verdict(err)
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := c.Check(ctx)
	want := map[string]string{"/hang": "fail: timed out", "/ok": "ok", "/broken": "fail: status 503 (want 2xx or 3xx)"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("observed (-want +got):\n%s", diff)
	}
	if v := verdict(err); !strings.HasPrefix(v, "warn: 2 of 3 backends failing") {
		t.Errorf("check: %s", v)
	}

	// A canceled run (the monitor stopping) says nothing of the backends.
	clear(got)
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if err := c.Check(ctx); err == nil {
		t.Error("canceled check passed")
	}
	if len(got) != 0 {
		t.Errorf("a canceled run was observed: %v", got)
	}
}

func parse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("lab.yaml", []byte(yaml), config.Options{Getenv: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// The first inside http check of a service feeds the rotation: the
// implicit one, or the first of type http among checks; none for a service
// with only tcp checks, or without backends.
func TestBalancingCheck(t *testing.T) {
	cfg := parse(t, `version: 1
domain: lab.test
services:
  - { name: plain, host: plain, backends: ["http://127.0.0.1:8001", "http://127.0.0.1:8002"], health: { path: /alive } }
  - name: listed
    host: listed
    backend: http://127.0.0.1:8003
    health:
      checks:
        - { type: tcp, address: "127.0.0.1:8003" }
        - { type: http, name: login, path: /login }
        - { type: http, path: /status }
  - { name: tcponly, host: tcponly, backend: "http://127.0.0.1:8004", health: { checks: [{ type: tcp }] } }
  - { name: files, host: files, echo: true, health: {} }
  - { name: bare, host: bare, backend: "http://127.0.0.1:8005" }
`)
	got := map[string]string{}
	for _, s := range cfg.Services {
		got[s.Name] = BalancingCheck(s)
	}
	want := map[string]string{"plain": "http", "listed": "login", "tcponly": "", "files": "", "bare": ""}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("balancing checks (-want +got):\n%s", diff)
	}

	// Targets wire the balancing check to Env.OnBackend, and only it; it
	// runs at once when it starts.
	type call struct{ Service, Backend, Err string }
	var calls []call
	env := Env{OnBackend: func(service, backend string, err error) {
		e := ""
		if err != nil {
			e = err.Error()
		}
		calls = append(calls, call{service, backend, e})
	}}
	targets, err := Targets(cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	var prompt []string
	for _, tg := range targets {
		hc, ok := tg.Checker.(*HTTPCheck)
		if tg.Prompt {
			prompt = append(prompt, tg.Service+"/"+tg.Check)
		}
		if !ok || hc.Observe == nil {
			continue
		}
		for _, u := range hc.URLs {
			hc.Observe(u, nil)
			hc.Observe(u, &Warning{Msg: "slow"})
			hc.Observe(u, errors.New("connection refused"))
		}
	}
	if diff := cmp.Diff([]string{"plain/http", "listed/login"}, prompt); diff != "" {
		t.Errorf("prompt targets (-want +got):\n%s", diff)
	}
	wantCalls := []call{
		{"plain", "http://127.0.0.1:8001", ""}, {"plain", "http://127.0.0.1:8001", ""}, {"plain", "http://127.0.0.1:8001", "connection refused"},
		{"plain", "http://127.0.0.1:8002", ""}, {"plain", "http://127.0.0.1:8002", ""}, {"plain", "http://127.0.0.1:8002", "connection refused"},
		{"listed", "http://127.0.0.1:8003", ""}, {"listed", "http://127.0.0.1:8003", ""}, {"listed", "http://127.0.0.1:8003", "connection refused"},
	}
	if diff := cmp.Diff(wantCalls, calls); diff != "" {
		t.Errorf("OnBackend calls (a warning passes) (-want +got):\n%s", diff)
	}

	// Whether a check feeds the rotation is part of its spec: a reload that
	// makes another check the first http one restarts both.
	plainSpec := func(ts []Target, check string) any {
		for _, tg := range ts {
			if tg.Service == "listed" && tg.Check == check {
				return tg.Spec
			}
		}
		t.Fatalf("no target listed/%s", check)
		return nil
	}
	without, _ := Targets(cfg, Env{})
	if cmp.Equal(plainSpec(targets, "login"), plainSpec(without, "login")) {
		t.Error("the spec of a check does not change when it stops feeding the rotation")
	}
}

// A Prompt target runs the moment it starts, then at a random point of
// the next interval (prompt targets started together spread out); the
// others run first at a random point of their first interval.
func TestMonitorPrompt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var mu sync.Mutex
		first := map[string]time.Duration{}
		second := map[string]time.Duration{}
		checker := func(name string) Checker {
			return checkerFunc(func(context.Context) error {
				mu.Lock()
				defer mu.Unlock()
				if _, ok := first[name]; !ok {
					first[name] = time.Since(start)
				} else if _, ok := second[name]; !ok {
					second[name] = time.Since(start)
				}
				return nil
			})
		}
		m := New(Options{})
		var targets []Target
		names := []string{"a", "b", "c", "d", "e", "p", "q"}
		for _, name := range names {
			targets = append(targets, Target{Service: name, Check: "http", Scope: Inside, Interval: time.Minute, Timeout: time.Second,
				Failures: 1, Successes: 1, Checker: checker(name), Prompt: name == "a" || name == "p" || name == "q"})
		}
		m.Update(names, targets)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); m.Run(ctx) }()
		synctest.Wait()
		mu.Lock()
		for _, name := range []string{"a", "p", "q"} {
			if d, ok := first[name]; !ok || d != 0 {
				t.Errorf("the prompt target %s first ran after %v (ran: %v)", name, d, ok)
			}
		}
		mu.Unlock()
		time.Sleep(time.Minute)
		cancel()
		<-done
		late := 0
		for _, name := range []string{"b", "c", "d", "e"} {
			if first[name] > 0 {
				late++
			}
		}
		if late != 4 {
			t.Errorf("first runs %v: want b-e spread over the interval", first)
		}
		if second["a"] > time.Minute || second["a"] == second["p"] && second["p"] == second["q"] {
			t.Errorf("second runs of the prompt targets %v: want each at a random point of the next minute", second)
		}
	})
}

// An inside check of an https backend verifies its certificate as the
// gateway's proxy does: for the backend's own name (or
// backend_tls.server_name), not for the service's host it sends as Host.
func TestHTTPCheckBackendTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "vault.lab.test" {
			http.Error(w, "wrong host "+r.Host, http.StatusMisdirectedRequest)
		}
	}))
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	for _, tt := range []struct {
		name       string
		serverName string
		want       string
	}{
		{"the URL's host", "", "ok"},
		{"server_name", "example.com", "ok"},
		{"a wrong server_name", "other.example", "fail: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &HTTPCheck{URLs: []*url.URL{mustURL(t, srv.URL+"/")}, Host: "vault.lab.test",
				TLS: &tls.Config{RootCAs: roots, ServerName: tt.serverName, MinVersion: tls.VersionTLS12}}
			if got := verdict(c.Check(context.Background())); !strings.HasPrefix(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
