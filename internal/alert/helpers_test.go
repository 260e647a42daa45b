package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/testpeer"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/health"
)

// receiver is a local webhook endpoint that checks signatures and keeps
// what it was sent; it answers 503 while down.
type receiver struct {
	t      *testing.T
	secret string
	srv    *httptest.Server
	down   atomic.Bool

	mu       sync.Mutex
	messages []webhookBody
	keys     map[string]int // Idempotency-Key -> times received successfully
	refused  int
}

func newReceiver(t *testing.T, secret string) *receiver {
	r := &receiver{t: t, secret: secret, keys: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.down.Load() {
		r.mu.Lock()
		r.refused++
		r.mu.Unlock()
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	if got, want := req.Header.Get("X-Labgate-Signature"), "sha256="+Sign([]byte(r.secret), body); got != want {
		r.t.Errorf("signature %q, want %q", got, want)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var m webhookBody
	if err := json.Unmarshal(body, &m); err != nil {
		r.t.Errorf("webhook body: %v\n%s", err, body)
		return
	}
	if key := req.Header.Get("Idempotency-Key"); key != m.Key || key == "" {
		r.t.Errorf("Idempotency-Key %q, id %q", key, m.Key)
	}
	r.mu.Lock()
	r.keys[m.Key]++
	if r.keys[m.Key] == 1 {
		r.messages = append(r.messages, m)
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) got() []webhookBody {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]webhookBody(nil), r.messages...)
}

// duplicates returns the keys received more than once.
func (r *receiver) duplicates() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for k, n := range r.keys {
		if n > 1 {
			out = append(out, fmt.Sprintf("%s x%d", k, n))
		}
	}
	return out
}

func kinds(ms []webhookBody) string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Kind+":"+m.Cause)
	}
	return strings.Join(out, " ")
}

// waitFor polls cond until it holds or the test's patience runs out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testpeer.WaitFor(t, 30*time.Second, what, cond)
}

// parse parses a labgate file for a test.
func parse(t testing.TB, yaml string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	name := filepath.Join(dir, "lab.yaml")
	if err := os.WriteFile(name, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(name, config.Options{Getenv: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// lab runs a health monitor and an alert manager wired like the daemon.
type lab struct {
	mon    *health.Monitor
	mgr    *Manager
	cancel context.CancelFunc
	done   chan struct{}
}

func startLab(t *testing.T, cfg *config.Config, env health.Env, opts Options) *lab {
	t.Helper()
	mgr, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{mgr: mgr, done: make(chan struct{})}
	l.mon = health.New(health.Options{OnChange: func() { mgr.Observe(l.mon.Snapshot()) }})
	targets, err := health.Targets(cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	mgr.Update(cfg)
	l.mon.Update(health.ServiceNames(cfg), targets)
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go func() {
		defer close(l.done)
		var wg sync.WaitGroup
		wg.Go(func() { _ = l.mon.Run(ctx) })
		wg.Go(func() { _ = mgr.Run(ctx) })
		wg.Wait()
	}()
	t.Cleanup(l.stop)
	return l
}

// stop stops the monitor and the manager and closes the database, once.
func (l *lab) stop() {
	if l.cancel == nil {
		return
	}
	l.cancel()
	<-l.done
	l.mgr.Close()
	l.cancel = nil
}
