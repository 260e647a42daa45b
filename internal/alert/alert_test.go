package alert

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/health"
)

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC) // a Sunday

func down(cause string) Problem {
	return Problem{Cause: cause, Service: strings.TrimPrefix(cause, "service/"), State: health.Down, Title: cause + " is down", Receivers: []string{"ops"}}
}

// TestEvaluate walks incidents through their lives, one step at a time.
func TestEvaluate(t *testing.T) {
	degraded := down("service/a")
	degraded.State = health.Degraded
	relay := Problem{Cause: CauseRelay, State: health.Down, Title: "relay path broken: cuts off a, b", Services: []string{"a", "b"}}
	sunday := config.Maintenance{Weekly: &config.Weekly{Days: [7]bool{time.Sunday: true}, From: 11 * time.Hour, To: 13 * time.Hour, Timezone: "UTC"}}
	type step struct {
		at       time.Duration // after t0
		problems []Problem
		unknown  []string
		want     string // notices, "kind:cause" separated by spaces
	}
	tests := []struct {
		name     string
		settings Settings
		steps    []step
	}{
		{"fires once, resolves once", Settings{}, []step{
			{0, []Problem{down("service/a")}, nil, "firing:service/a"},
			{time.Minute, []Problem{down("service/a")}, nil, ""},
			{2 * time.Minute, nil, nil, "resolved:service/a"},
			{3 * time.Minute, nil, nil, ""},
		}},
		{"a change of state is an update", Settings{}, []step{
			{0, []Problem{down("service/a")}, nil, "firing:service/a"},
			{time.Minute, []Problem{degraded}, nil, "update:service/a"},
			{2 * time.Minute, []Problem{degraded}, nil, ""},
		}},
		{"unknown neither fires nor resolves", Settings{}, []step{
			{0, []Problem{down("service/a")}, nil, "firing:service/a"},
			{time.Minute, nil, []string{"service/a"}, ""},
			{2 * time.Minute, []Problem{down("service/a")}, nil, ""},
			{3 * time.Minute, nil, nil, "resolved:service/a"},
		}},
		{"reminders", Settings{Reminder: time.Hour}, []step{
			{0, []Problem{down("service/a")}, nil, "firing:service/a"},
			{59 * time.Minute, []Problem{down("service/a")}, nil, ""},
			{time.Hour, []Problem{down("service/a")}, nil, "reminder:service/a"},
			{90 * time.Minute, []Problem{down("service/a")}, nil, ""},
			{2 * time.Hour, []Problem{down("service/a")}, nil, "reminder:service/a"},
		}},
		{"maintenance holds, then tells", Settings{Maintenance: []config.Maintenance{sunday}}, []step{
			{0, []Problem{down("service/a")}, nil, ""},
			{59 * time.Minute, []Problem{down("service/a")}, nil, ""},
			{time.Hour, []Problem{down("service/a")}, nil, "firing:service/a"},
		}},
		{"ended inside maintenance: never told", Settings{Maintenance: []config.Maintenance{sunday}}, []step{
			{0, []Problem{down("service/a")}, nil, ""},
			{30 * time.Minute, nil, nil, ""},
			{2 * time.Hour, nil, nil, ""},
		}},
		{"a change held by maintenance is told when it ends", Settings{Maintenance: []config.Maintenance{{Start: t0.Add(time.Minute), End: t0.Add(time.Hour)}}}, []step{
			{0, []Problem{degraded}, nil, "firing:service/a"},
			{30 * time.Minute, []Problem{down("service/a")}, nil, ""},
			{time.Hour, []Problem{down("service/a")}, nil, "update:service/a"},
			{2 * time.Hour, []Problem{down("service/a")}, nil, ""},
		}},
		{"maintenance of another service holds nothing", Settings{Maintenance: []config.Maintenance{{Services: []string{"b"}, Start: t0, End: t0.Add(time.Hour)}}}, []step{
			{0, []Problem{down("service/a")}, nil, "firing:service/a"},
		}},
		{"the end goes to those told of the start", Settings{}, []step{
			{0, []Problem{down("service/a")}, nil, "firing:service/a>ops"},
			{time.Minute, []Problem{func() Problem {
				p := down("service/a")
				p.State = health.Degraded
				p.Receivers = []string{"phone"}
				return p
			}()}, nil,
				"update:service/a>ops,phone"},
			{2 * time.Minute, nil, nil, "resolved:service/a>ops,phone"},
		}},
		{"a relay incident waits for its group", Settings{GroupWait: 10 * time.Second}, []step{
			{0, []Problem{{Cause: CauseRelay, State: health.Down, Title: "relay path broken: cuts off a", Services: []string{"a"}}}, nil, ""},
			{5 * time.Second, []Problem{relay}, nil, ""},
			{10 * time.Second, []Problem{relay}, nil, "firing:relay"},
			{20 * time.Second, []Problem{relay}, nil, ""},
			{30 * time.Second, nil, nil, "resolved:relay"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			open := map[string]Incident{}
			id := uint64(0)
			newID := func() uint64 { id++; return id }
			for i, s := range tt.steps {
				problems := map[string]Problem{}
				for _, p := range s.problems {
					problems[p.Cause] = p
				}
				unknown := map[string]bool{}
				for _, u := range s.unknown {
					unknown[u] = true
				}
				var notices []Notice
				open, notices = evaluate(t0.Add(s.at), open, problems, unknown, tt.settings, newID)
				var got []string
				for _, n := range notices {
					note := n.Kind + ":" + n.Incident.Problem.Cause
					if strings.Contains(s.want, ">") {
						note += ">" + strings.Join(n.Receivers, ",")
					}
					got = append(got, note)
				}
				if g := strings.Join(got, " "); g != s.want {
					t.Errorf("step %d (+%s): notices %q, want %q", i, s.at, g, s.want)
				}
			}
		})
	}
}

// A broken relay path makes one problem that names the services it cut
// off, for the union of their receivers; the services' own causes wait.
func TestRoutingGroupsByRelay(t *testing.T) {
	cfg := parse(t, `version: 1
domain: lab.test
alerts:
  a: { webhook: { url: "http://127.0.0.1:9/a" } }
  b: { webhook: { url: "http://127.0.0.1:9/b" } }
  ops: { webhook: { url: "http://127.0.0.1:9/ops" } }
alerting: { notify: [ops] }
services:
  - { name: www, host: www, expose: public, backend: "http://127.0.0.1:9", alert: [a] }
  - { name: blog, host: blog, expose: public, backend: "http://127.0.0.1:9", alert: [b] }
  - { name: wiki, host: wiki, expose: public, backend: "http://127.0.0.1:9", alert: [a] }
  - { name: vault, host: vault, backend: "http://127.0.0.1:9", alert: [a] }
`)
	cut := func(name string) health.ServiceStatus {
		return health.ServiceStatus{Name: name, State: health.Degraded, Cause: health.CauseRelay, Reason: "relay path broken"}
	}
	snap := health.Snapshot{
		Services: []health.ServiceStatus{cut("www"), cut("blog"), cut("wiki"), {Name: "vault", State: health.Up}},
		Relay: &health.CheckStatus{Check: health.RelayCheck, Scope: health.Outside, State: health.Down,
			Last: &health.Result{State: health.Down, Error: "connection refused"}},
	}
	problems, unknown := newRouting(cfg).problems(snap)
	want := map[string]Problem{CauseRelay: {Cause: CauseRelay, State: health.Down, Title: "relay path broken: cuts off blog, wiki, www",
		Detail: "connection refused", Services: []string{"blog", "wiki", "www"}, Receivers: []string{"a", "b", "ops"}}}
	if diff := cmp.Diff(want, problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	if !unknown["service/www"] || !unknown["service/blog"] || unknown["service/vault"] {
		t.Errorf("unknown %v", unknown)
	}
}

// fakeSender records messages and fails while failing is set: for the
// timing of reminders and retries (receivers are tested against local
// servers in receivers_test.go).
type fakeSender struct {
	mu      sync.Mutex
	failing bool
	got     []string
	tries   []time.Time
}

func (f *fakeSender) Send(_ context.Context, m Message) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tries = append(f.tries, time.Now())
	if f.failing {
		return "", errors.New("receiver down")
	}
	f.got = append(f.got, m.Kind+":"+m.Cause)
	return "ref", nil
}

func (f *fakeSender) messages() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.got, " ")
}

const fakeLab = `version: 1
domain: lab.test
alerts:
  ops: { webhook: { url: "http://127.0.0.1:9/" } }
alerting: { reminder: 4h }
services:
  - { name: vault, host: vault, backend: "http://127.0.0.1:9", alert: [ops] }
`

// With a fake clock: reminders come every 4 hours, retries back off
// exponentially, and the delivery goes out once the receiver is back.
func TestManagerTimers(t *testing.T) {
	cfg := parse(t, fakeLab)
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSender{}
		m, err := Open(Options{Dir: dir, Senders: map[string]Sender{"ops": f}, Evaluate: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		m.Update(cfg)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); m.Run(ctx) }()

		m.Observe(snapshot(map[string]health.State{"vault": health.Down}))
		synctest.Wait()
		if got := f.messages(); got != "firing:service/vault" {
			t.Fatalf("after the failure: %q", got)
		}
		time.Sleep(4*time.Hour + time.Minute)
		synctest.Wait()
		if got := f.messages(); got != "firing:service/vault reminder:service/vault" {
			t.Fatalf("after 4h: %q", got)
		}

		// The receiver goes down: the resolve is retried with growing waits.
		f.mu.Lock()
		f.failing, f.tries = true, nil
		f.mu.Unlock()
		m.Observe(snapshot(map[string]health.State{"vault": health.Up}))
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		f.mu.Lock()
		var waits []time.Duration
		for i := 1; i < len(f.tries); i++ {
			waits = append(waits, f.tries[i].Sub(f.tries[i-1]))
		}
		f.failing = false
		f.mu.Unlock()
		if len(waits) < 4 {
			t.Fatalf("tries at %v after the resolve", waits)
		}
		for i := 1; i < len(waits); i++ {
			if waits[i] <= waits[i-1] {
				t.Errorf("retry waits do not grow: %v", waits)
			}
		}
		if waits[0] < time.Second || waits[0] > 3*time.Second {
			t.Errorf("first retry after %v, want about 2s", waits[0])
		}
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if got := f.messages(); got != "firing:service/vault reminder:service/vault resolved:service/vault" {
			t.Fatalf("after the receiver is back: %q", got)
		}
		if q, _ := m.Queue(); len(q) != 0 {
			t.Errorf("queue %+v", q)
		}
		cancel()
		<-done
		m.Close()
	})
}

// Raise and Clear carry problems that are no one service's, such as a
// failed certificate renewal, to alerting.notify; they survive a restart.
func TestRaiseAndClear(t *testing.T) {
	cfg := parse(t, fakeLab)
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSender{}
		open := func() (*Manager, func()) {
			m, err := Open(Options{Dir: dir, Senders: map[string]Sender{"ops": f}})
			if err != nil {
				t.Fatal(err)
			}
			m.Update(cfg)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); m.Run(ctx) }()
			return m, func() { cancel(); <-done; m.Close() }
		}
		m, stop := open()
		if err := m.Raise("cert/vault.lab.test", "certificate renewal failed for vault.lab.test", "acme: rate limited"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		stop()
		m, stop = open()
		m.Observe(snapshot(map[string]health.State{"vault": health.Up}))
		synctest.Wait()
		if got := f.messages(); got != "firing:cert/vault.lab.test" {
			t.Fatalf("after a restart: %q", got)
		}
		if err := m.Clear("cert/vault.lab.test"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		stop()
		if got := f.messages(); got != "firing:cert/vault.lab.test resolved:cert/vault.lab.test" {
			t.Fatalf("after Clear: %q", got)
		}
	})
}

func TestText(t *testing.T) {
	m := Message{Kind: Firing, State: health.Down, Title: "vault is down", Detail: "inside check http: connection refused",
		Started: t0, Time: t0}
	if got, want := Text(m), "🔴 vault is down\ninside check http: connection refused\nsince 2026-11-29 12:00 UTC"; got != want {
		t.Errorf("firing:\n%s\nwant\n%s", got, want)
	}
	m.Kind, m.Time = Resolved, t0.Add(95*time.Second)
	if got, want := Text(m), "✅ Resolved: vault is down (after 2m0s)"; got != want {
		t.Errorf("resolved: %q, want %q", got, want)
	}
}
