package alert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/http"
	netmail "net/mail"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/labgate/labgate/internal/statefile/damage"

	bolt "go.etcd.io/bbolt"

	"github.com/labgate/labgate/internal/health"
)

// After a restart the daemon starts the notifier before it gives it the
// config (a generation is built in between): a delivery queued before the
// restart must wait for the receivers, not be dropped as addressed to one
// that no longer exists. It is then delivered, once.
func TestQueuedDeliveryWaitsForConfig(t *testing.T) {
	rcv := newReceiver(t, "s3cret")
	cfg := parse(t, webhookLab("http://127.0.0.1:1", rcv.srv.URL))
	dir := t.TempDir()

	// In a bubble, its clock is the one the queued delivery was timed by.
	synctest.Test(t, func(t *testing.T) {
		first, err := Open(Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		first.Update(cfg)
		if err := first.Raise("dns", "DNS records of lab.test not reconciled", "provider answered 500"); err != nil {
			t.Fatal(err)
		}
		if q, _ := first.Queue(); len(q) != 1 {
			t.Fatalf("queued %d deliveries, want 1", len(q))
		}
		first.Close()

		m, err := Open(Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); _ = m.Run(ctx) }()
		time.Sleep(time.Minute) // the generation takes its time
		synctest.Wait()
		q, err := m.Queue()
		if err != nil {
			t.Fatal(err)
		}
		if len(q) != 1 {
			t.Errorf("before the config: %d deliveries queued, want the 1 from before the restart", len(q))
		}
		cancel()
		<-done
	})

	second := startLab(t, cfg, health.Env{}, Options{Dir: dir})
	waitFor(t, "the alert queued before the restart", func() bool { return len(rcv.got()) == 1 })
	waitFor(t, "an empty queue", func() bool { q, _ := second.mgr.Queue(); return len(q) == 0 })
	if k := kinds(rcv.got()); k != "firing:dns" {
		t.Errorf("received %s", k)
	}
}

// Message keys (Matrix txnId, webhook Idempotency-Key, email Message-ID)
// differ between databases: a wiped state_dir, or two gateways telling one
// receiver, must not reuse a key a receiver deduplicates on.
func TestKeysUniquePerDatabase(t *testing.T) {
	rcv := newReceiver(t, "s3cret")
	cfg := parse(t, webhookLab("http://127.0.0.1:1", rcv.srv.URL))
	var keys []string
	for range 2 {
		m, err := Open(Options{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		m.Update(cfg)
		if err := m.Raise("dns", "DNS records of lab.test not reconciled", ""); err != nil {
			t.Fatal(err)
		}
		q, _ := m.Queue()
		m.Close()
		if len(q) != 1 {
			t.Fatalf("queued %d", len(q))
		}
		keys = append(keys, q[0].Message.Key)
	}
	if keys[0] == keys[1] {
		t.Errorf("two databases both sent key %q", keys[0])
	}
	if firstKey(keys[0]) != keys[0] {
		t.Errorf("the first message's key %q is not its own first key %q", keys[0], firstKey(keys[0]))
	}
}

// A title naming a hundred services cut off by the relay, or one with a
// line break in it, still makes one well-formed Subject header, and a
// body whose lines are within the 998 characters SMTP allows.
func TestEmailSubject(t *testing.T) {
	e := &Email{From: "lab@lab.test", To: []string{"me@lab.test"}}
	var names []string
	for i := range 100 {
		names = append(names, "service-"+strings.Repeat("x", i%7)+"-é")
	}
	for _, title := range []string{
		"vault is down",
		relayTitle(names),
		"vault is down\r\nBcc: someone@evil.test",
	} {
		m := Message{Key: "labgate-abc-1-2", Kind: Update, Incident: 1, State: health.Down, Title: title,
			Detail: "relay path broken: dial tcp 203.0.113.7:443: i/o timeout", Time: time.Now(), Started: time.Now()}
		raw := e.mail(m)
		for l := range strings.SplitSeq(string(raw), "\r\n") {
			if len(l) > 998 {
				t.Errorf("a line of %d characters", len(l))
			}
		}
		msg, err := netmail.ReadMessage(strings.NewReader(string(raw)))
		if err != nil {
			t.Fatal(err)
		}
		if b := msg.Header.Get("Bcc"); b != "" {
			t.Errorf("a title made a Bcc header: %q", b)
		}
		subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
		if err != nil {
			t.Fatal(err)
		}
		want := "[labgate] " + strings.NewReplacer("\r", " ", "\n", " ").Replace(title)
		if subject != want {
			t.Errorf("subject %q, want %q", subject, want)
		}
		if got := msg.Header.Get("In-Reply-To"); got != "<labgate-abc-1-1@labgate>" {
			t.Errorf("In-Reply-To %q", got)
		}
		body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.NewReplacer("\r\n", "\r\n", "\r", "\r\n", "\n", "\r\n").Replace(Text(m)) + "\r\n"; string(body) != want {
			t.Errorf("body %q, want %q", body, want)
		}
	}
}

// A damaged alerts.db (power loss, a worn SD card) never keeps the
// gateway from starting nor alerts off: it is moved aside, never deleted,
// the log says what was lost and where the copy is, and the alerts go on
// with an empty state.
func TestOpenDamagedDatabase(t *testing.T) {
	// The file of a gateway's first minutes, as `labgate serve` left it
	// (cut in half, its freelist lies past the end: bbolt faults on it),
	// and one of many pages (cut in half, it loses some of its problems).
	serve, err := os.ReadFile("testdata/serve-alerts.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("from serve", func(t *testing.T) { testOpenDamaged(t, serve) })
	t.Run("300 problems", func(t *testing.T) {
		good := t.TempDir()
		m, err := Open(Options{Dir: good})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 300 {
			if err := m.Raise(fmt.Sprintf("cert/%d.example.org", i), "certificate not renewed", strings.Repeat("the ACME CA does not answer. ", 20)); err != nil {
				t.Fatal(err)
			}
		}
		m.Close()
		db, err := os.ReadFile(filepath.Join(good, "alerts.db"))
		if err != nil {
			t.Fatal(err)
		}
		testOpenDamaged(t, db)
	})
}

func testOpenDamaged(t *testing.T, db []byte) {
	for name, data := range damage.Bolt(db) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "alerts.db")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			var log bytes.Buffer
			now := time.Date(2026, 11, 26, 3, 3, 4, 0, time.UTC)
			m, err := Open(Options{Dir: dir, Log: slog.New(slog.NewTextHandler(&log, nil)), Now: func() time.Time { return now }})
			if err != nil {
				t.Fatalf("a damaged database keeps alerts off: %v", err)
			}
			aside := path + ".damaged-20261126T030304Z"
			if m.Damaged() != aside {
				t.Errorf("Damaged() = %q, want %q", m.Damaged(), aside)
			}
			if n := raised(t, m); n != 0 {
				t.Errorf("the new state holds %d problems", n)
			}
			if err := m.Raise("x", "a new problem", ""); err != nil {
				t.Errorf("the new state takes no problem: %v", err)
			}
			m.Close()
			if kept, err := os.ReadFile(aside); err != nil || !bytes.Equal(kept, data) {
				t.Errorf("the damaged copy is not kept as it was: %v", err)
			}
			for _, want := range []string{"level=ERROR", "open incidents", "lost", "damaged_copy=" + aside} {
				if !strings.Contains(log.String(), want) {
					t.Errorf("log lacks %q:\n%s", want, log.String())
				}
			}
			// The next start finds the new database whole.
			m, err = Open(Options{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if m.Damaged() != "" {
				t.Errorf("the new database is taken for damaged: %s", m.Damaged())
			}
			if n := raised(t, m); n != 1 {
				t.Errorf("the new state holds %d problems, want the 1 raised", n)
			}
		})
	}
}

// raised counts the problems m keeps.
func raised(t *testing.T, m *Manager) int {
	t.Helper()
	var n int
	if err := m.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(bucketRaised).Stats().KeyN; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// A webhook's URL often carries its secret: a failed delivery's error,
// which is logged and kept in the queue, names only the host.
func TestSendErrorHidesURL(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	u, _ := url.Parse("http://" + addr + "/api/webhooks/1234/s3cr3t-t0ken?token=s3cr3t-t0ken")
	client := &http.Client{Timeout: 5 * time.Second}
	m := Message{Key: "labgate-x-1-1", Kind: Firing, Title: "vault is down", Time: time.Now(), Started: time.Now()}
	for name, s := range map[string]Sender{
		"webhook": &Webhook{URL: u, Secret: "k", Client: client},
		"ntfy":    &Ntfy{URL: u, Client: client},
	} {
		_, err := s.Send(t.Context(), m)
		if err == nil {
			t.Fatalf("%s: sent to a closed port", name)
		}
		if strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), addr) {
			t.Errorf("%s: error %q", name, err)
		}
	}
}

// An evaluation that changes nothing writes nothing: the manager looks at
// its incidents every few seconds and at every change of a check's error
// text, and each write is an fsync.
func TestEvaluateWithoutNewsWritesNothing(t *testing.T) {
	rcv := newReceiver(t, "s3cret")
	cfg := parse(t, webhookLab("http://127.0.0.1:1", rcv.srv.URL))
	m, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.Update(cfg)
	txid := func() int {
		var id int
		_ = m.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
		return id
	}
	m.Observe(snapshot(map[string]health.State{"vault": health.Down}))
	if q, _ := m.Queue(); len(q) != 1 {
		t.Fatalf("queued %d, want the firing", len(q))
	}
	before := txid()
	for range 10 {
		m.evaluate()
		m.Observe(snapshot(map[string]health.State{"vault": health.Down}))
	}
	if after := txid(); after != before {
		t.Errorf("%d writes for evaluations that changed nothing", after-before)
	}
	m.Observe(snapshot(map[string]health.State{"vault": health.Up}))
	if q, _ := m.Queue(); len(q) != 2 {
		t.Errorf("queued %d, want the firing and the resolve", len(q))
	}
	if inc, _ := m.Incidents(); len(inc) != 0 {
		t.Errorf("open incidents after the resolve: %v", inc)
	}
}

// countingSender counts what it is sent; past a limit it stops answering,
// so that a test of a runaway loop fails instead of spinning for ever.
type countingSender struct{ n atomic.Int32 }

func (c *countingSender) Send(ctx context.Context, _ Message) (string, error) {
	if c.n.Add(1) > 20 {
		<-ctx.Done()
		return "", ctx.Err()
	}
	return "", nil
}

// When the database cannot take a delivery's outcome (disk full), the
// message, delivered, is not sent again and again: the outcome is kept in
// memory and written once the database takes it.
func TestDeliveredOnceWhileTheDiskIsFull(t *testing.T) {
	cfg := parse(t, fakeLab)
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		s := &countingSender{}
		m, err := Open(Options{Dir: dir, Senders: map[string]Sender{"ops": s}})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		m.Update(cfg)
		if err := m.Raise("dns", "DNS records of lab.test not reconciled", ""); err != nil {
			t.Fatal(err)
		}
		var full atomic.Bool
		full.Store(true)
		m.update = func(f func(*bolt.Tx) error) error {
			if full.Load() {
				return errors.New("write alerts.db: no space left on device")
			}
			return m.db.Update(f)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); _ = m.Run(ctx) }()

		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if n := s.n.Load(); n != 1 {
			t.Errorf("sent %d times while the disk was full, want once", n)
		}
		full.Store(false)
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if q, _ := m.Queue(); len(q) != 0 {
			t.Errorf("%d deliveries still queued once the disk had room", len(q))
		}
		if n := s.n.Load(); n != 1 {
			t.Errorf("sent %d times in all, want once", n)
		}
		cancel()
		<-done
	})
}

// BenchmarkEvaluateNoNews is the cost of looking at incidents when nothing
// changed (every 5 s, and at every change of a check's error text).
func BenchmarkEvaluateNoNews(b *testing.B) {
	cfg := parse(b, fakeLab)
	m, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	m.Update(cfg)
	m.Observe(snapshot(map[string]health.State{"vault": health.Down}))
	for b.Loop() {
		m.evaluate()
	}
}
