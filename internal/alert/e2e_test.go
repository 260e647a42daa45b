package alert

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/health"
)

// flaky is a real backend that answers 500 while failing.
type flaky struct {
	srv     *httptest.Server
	failing atomic.Bool
}

func newFlaky(t *testing.T) *flaky {
	f := &flaky{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.failing.Load() {
			http.Error(w, "database unreachable", http.StatusInternalServerError)
			return
		}
		w.Write([]byte(`{"status":"ok"}`))
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func webhookLab(backend, hook string) string {
	return fmt.Sprintf(`version: 1
domain: lab.test
alerts:
  ops: { webhook: { url: %q, secret: s3cret } }
alerting: { reminder: 0s }
services:
  - name: vault
    host: vault
    backend: %s
    health:
      interval: 1s
      timeout: 1s
      failures: 2
      successes: 2
      checks:
        - type: http
          path: /alive
          json: { field: status, equals: ok }
    alert: [ops]
`, hook, backend)
}

// A backend that fails and recovers gives exactly one alert and one
// resolve, signed, at a local webhook receiver.
func TestFailAndRecoverAlertsOnce(t *testing.T) {
	be := newFlaky(t)
	rcv := newReceiver(t, "s3cret")
	cfg := parse(t, webhookLab(be.srv.URL, rcv.srv.URL))
	l := startLab(t, cfg, health.Env{}, Options{Dir: t.TempDir()})

	waitFor(t, "vault up", func() bool {
		s, _ := l.mon.Snapshot().Service("vault")
		return s.State == health.Up
	})
	be.failing.Store(true)
	waitFor(t, "the alert", func() bool { return len(rcv.got()) >= 1 })
	be.failing.Store(false)
	waitFor(t, "the resolve", func() bool { return len(rcv.got()) >= 2 })
	// Let a few more rounds pass: nothing else may arrive.
	waitFor(t, "vault up", func() bool {
		s, _ := l.mon.Snapshot().Service("vault")
		return s.State == health.Up
	})
	l.stop()

	got := rcv.got()
	if k := kinds(got); k != "firing:service/vault resolved:service/vault" {
		t.Fatalf("received %s, want one firing and one resolved", k)
	}
	if got[0].State != health.Down || got[0].Incident != got[1].Incident || got[0].Key == got[1].Key {
		t.Errorf("firing %+v\nresolved %+v", got[0], got[1])
	}
	if want := "inside check http: status 500 (want 2xx or 3xx)"; got[0].Detail != want {
		t.Errorf("detail %q, want %q", got[0].Detail, want)
	}
	if d := rcv.duplicates(); len(d) > 0 {
		t.Errorf("delivered more than once: %v", d)
	}
}

// A receiver that fails for a while still gets the alert once it
// recovers, once.
func TestReceiverDownThenUp(t *testing.T) {
	be := newFlaky(t)
	rcv := newReceiver(t, "s3cret")
	rcv.down.Store(true)
	cfg := parse(t, webhookLab(be.srv.URL, rcv.srv.URL))
	fast := func(int) time.Duration { return 50 * time.Millisecond }
	l := startLab(t, cfg, health.Env{}, Options{Dir: t.TempDir(), Backoff: fast})

	be.failing.Store(true)
	waitFor(t, "a few refused deliveries", func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return rcv.refused >= 3
	})
	if q, _ := l.mgr.Queue(); len(q) != 1 || q[0].Attempts < 1 || q[0].LastError == "" {
		t.Fatalf("queue while the receiver is down: %+v", q)
	}
	rcv.down.Store(false)
	waitFor(t, "the alert", func() bool { return len(rcv.got()) >= 1 })
	waitFor(t, "an empty queue", func() bool { q, _ := l.mgr.Queue(); return len(q) == 0 })
	l.stop()
	if k := kinds(rcv.got()); k != "firing:service/vault" {
		t.Fatalf("received %s, want one firing", k)
	}
	if d := rcv.duplicates(); len(d) > 0 {
		t.Errorf("delivered more than once: %v", d)
	}
}

// A restart in the middle (an alert queued, its receiver down) loses
// nothing and duplicates nothing: the new manager delivers the alert, and
// the resolve, once each.
func TestRestartMidDelivery(t *testing.T) {
	be := newFlaky(t)
	rcv := newReceiver(t, "s3cret")
	rcv.down.Store(true)
	cfg := parse(t, webhookLab(be.srv.URL, rcv.srv.URL))
	dir := t.TempDir()
	fast := func(int) time.Duration { return 50 * time.Millisecond }

	first := startLab(t, cfg, health.Env{}, Options{Dir: dir, Backoff: fast})
	be.failing.Store(true)
	waitFor(t, "a refused delivery", func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return rcv.refused >= 1
	})
	first.stop()

	rcv.down.Store(false)
	second := startLab(t, cfg, health.Env{}, Options{Dir: dir, Backoff: fast})
	waitFor(t, "the alert after the restart", func() bool { return len(rcv.got()) >= 1 })
	// The new monitor starts from unknown: it must neither resolve nor
	// fire the incident again while the backend is still failing.
	waitFor(t, "vault down again in the new monitor", func() bool {
		s, _ := second.mon.Snapshot().Service("vault")
		return s.State == health.Down
	})
	be.failing.Store(false)
	waitFor(t, "the resolve", func() bool { return len(rcv.got()) >= 2 })
	waitFor(t, "an empty queue", func() bool { q, _ := second.mgr.Queue(); return len(q) == 0 })
	second.stop()

	got := rcv.got()
	if k := kinds(got); k != "firing:service/vault resolved:service/vault" {
		t.Fatalf("received %s, want one firing and one resolved", k)
	}
	if d := rcv.duplicates(); len(d) > 0 {
		t.Errorf("delivered more than once: %v", d)
	}
	if !slices.Equal(got[0].Services, []string{"vault"}) {
		t.Errorf("services %v", got[0].Services)
	}
}
