package alert

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/health"
	"github.com/labgate/labgate/internal/statefile"
)

// Buckets of the database.
var (
	bucketIncidents = []byte("incidents") // cause -> Incident
	bucketQueue     = []byte("queue")     // sequence (big endian) -> Delivery
	bucketRefs      = []byte("refs")      // "incident/receiver" -> the receiver's reference to its first message
	bucketRaised    = []byte("raised")    // cause -> Problem raised by the daemon
	bucketMeta      = []byte("meta")      // "incident" -> last incident id, "instance" -> this database's random id
)

// Delivery is one message to one receiver, queued until it is delivered.
type Delivery struct {
	Seq         uint64    `json:"seq"`
	Receiver    string    `json:"receiver"`
	Message     Message   `json:"message"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"`
	LastError   string    `json:"last_error,omitempty"`
}

// Message is what a receiver is told.
type Message struct {
	// Key identifies the message: the same on every retry and after a
	// restart, different for every message (Matrix txnId, webhook
	// Idempotency-Key, email Message-ID).
	Key      string       `json:"id"`
	Kind     string       `json:"kind"` // firing, update, reminder, resolved
	Incident uint64       `json:"incident"`
	Cause    string       `json:"cause"`
	State    health.State `json:"state"` // the incident's state; for resolved, the state it was in
	Title    string       `json:"title"`
	Detail   string       `json:"detail,omitempty"`
	Services []string     `json:"services,omitempty"`
	Started  time.Time    `json:"started_at"`
	Time     time.Time    `json:"time"`
	// Ref is the receiver's reference to the incident's first message (a
	// Matrix event id), "" for the first.
	Ref string `json:"-"`
}

// Sender delivers messages to one receiver. Send returns the receiver's
// reference to the message (kept for the incident's later messages) or an
// error; a failed Send is retried with the same Message.
type Sender interface {
	Send(ctx context.Context, m Message) (ref string, err error)
}

// Options configure a Manager.
type Options struct {
	// Dir is where the database lives (state_dir/alerts); created if missing.
	Dir string
	Log *slog.Logger
	// Registerer receives the alert metrics; nil: none.
	Registerer prometheus.Registerer
	// Client sends HTTP receivers' requests; nil: a client with a 30s timeout.
	Client *http.Client
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Backoff is the wait before retry number n (1, 2, …); nil: 2s doubling
	// up to 10 minutes, with 20% jitter.
	Backoff func(n int) time.Duration
	// GroupWait holds a relay incident's first notice so it names every
	// service cut off; 0: 10s. Negative: no wait.
	GroupWait time.Duration
	// Evaluate is how often incidents are looked at without news (reminders,
	// the end of maintenance windows, group waits); 0: 5s.
	Evaluate time.Duration
	// MaxAge drops a delivery still failing after this long; 0: 72h.
	MaxAge time.Duration
	// Senders, when set, replace the receivers of the config (tests).
	Senders map[string]Sender
}

// Manager keeps incidents and delivers their notices.
type Manager struct {
	opts    Options
	log     *slog.Logger
	db      *bolt.DB
	aside   string // where Open moved a damaged database, if it did
	metrics *metrics

	mu       sync.Mutex // incidents, settings, routing, last snapshot
	settings Settings
	routing  routing
	snap     *health.Snapshot
	senders  map[string]Sender
	wake     chan struct{}
	// configured is closed by the first Update: until then nothing is
	// known of the receivers, and a queued delivery must wait, not be
	// dropped as addressed to a receiver that no longer exists.
	configured chan struct{}
	once       sync.Once

	// update writes to the database (db.Update; tests make it fail).
	update func(func(*bolt.Tx) error) error
	// unsaved are outcomes of deliveries the database did not take (disk
	// full): kept here, and written again before each round, so that a
	// delivered message is not sent again and again meanwhile.
	qmu     sync.Mutex
	unsaved map[uint64]outcome
}

// outcome is what became of a delivery attempt.
type outcome struct {
	d    Delivery // with its attempts and next attempt when it stays queued
	done bool     // delivered or dropped: off the queue
	ref  string   // the receiver's reference to the message, if it is the incident's first
}

// Open opens (or creates) the database in opts.Dir. Deliveries queued
// before a restart are delivered by Run.
func Open(opts Options) (*Manager, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if opts.Backoff == nil {
		opts.Backoff = backoff
	}
	if opts.GroupWait == 0 {
		opts.GroupWait = 10 * time.Second
	}
	if opts.Evaluate <= 0 {
		opts.Evaluate = 5 * time.Second
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = 72 * time.Hour
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("alert state: %w", err)
	}
	db, aside, err := openDB(filepath.Join(opts.Dir, "alerts.db"), opts.Now(), opts.Log)
	if err != nil {
		return nil, err
	}
	m := &Manager{opts: opts, log: opts.Log, db: db, aside: aside, wake: make(chan struct{}, 1), senders: opts.Senders,
		configured: make(chan struct{}), update: db.Update, unsaved: map[uint64]outcome{}}
	m.settings.GroupWait = max(opts.GroupWait, 0)
	if opts.Registerer != nil {
		m.metrics = newMetrics(opts.Registerer)
	}
	m.metrics.queue(m.queueLength())
	return m, nil
}

// openDB opens the database. A damaged file (bbolt panics on some damage,
// and faults on a truncated one) is found first (statefile.CheckBolt), moved aside to
// alerts.db.damaged-<UTC time> and replaced by an empty database: the
// alerts go on, without the incidents and queued notices of before. The
// name of the damaged copy is returned, "" when there was none.
func openDB(path string, now time.Time, log *slog.Logger) (db *bolt.DB, aside string, err error) {
	if cerr := statefile.CheckBolt(path); errors.Is(cerr, statefile.ErrDamaged) {
		aside, err = statefile.MoveAside(path, now)
		if err != nil {
			return nil, "", fmt.Errorf("alert state %s is %v and %w: move it aside to start with an empty alert state", path, cerr, err)
		}
		log.Error("the alert state was damaged: its open incidents, their reminders and the notices not yet delivered are lost; alerts go on with an empty state. The damaged copy is kept for you to inspect or delete",
			"file", path, "damaged_copy", aside, "error", cerr)
	} else if cerr != nil {
		return nil, "", fmt.Errorf("alert state %s: %w", path, cerr)
	}
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				_ = db.Close()
			}
			db, err = nil, fmt.Errorf("alert state %s is damaged (%v): move it aside to start with an empty alert state", path, r)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, "", fmt.Errorf("alert state %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketIncidents, bucketQueue, bucketRefs, bucketRaised, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		// Message keys name the database they come from: incident numbers
		// start again at 1 in a new one (state_dir wiped, two gateways
		// mailing one inbox), and a key seen before is taken for a message
		// already delivered (Matrix txnId, Message-ID).
		meta := tx.Bucket(bucketMeta)
		if len(meta.Get([]byte("instance"))) == 0 {
			return meta.Put([]byte("instance"), []byte(strconv.FormatUint(rand.Uint64(), 36)))
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, "", fmt.Errorf("alert state %s: %w", path, err)
	}
	return db, aside, nil
}

// Damaged is where Open moved a damaged database aside (the incidents and
// queued notices it held are lost), "" when it found none.
func (m *Manager) Damaged() string { return m.aside }

// Close closes the database. Run must have returned.
func (m *Manager) Close() error { return m.db.Close() }

func backoff(n int) time.Duration {
	d := 2 * time.Second << min(n-1, 10)
	d = min(d, 10*time.Minute)
	return d - d/10 + time.Duration(rand.Int64N(int64(d/5)+1))
}

// Update takes the receivers, routing and alerting settings of cfg. Open
// incidents and queued deliveries are kept.
func (m *Manager) Update(cfg *config.Config) {
	m.mu.Lock()
	m.routing = newRouting(cfg)
	m.settings.Reminder = cfg.Alerting.Reminder
	m.settings.Maintenance = cfg.Alerting.Maintenance
	if m.opts.Senders == nil {
		m.senders = map[string]Sender{}
		for _, r := range cfg.Alerts {
			m.senders[r.Name] = newSender(r, m.opts.Client)
		}
	}
	m.mu.Unlock()
	m.once.Do(func() { close(m.configured) })
	m.evaluate()
}

// Observe takes a new health snapshot and acts on what changed. A snapshot
// older than the last one observed (callers race) is ignored.
func (m *Manager) Observe(snap health.Snapshot) {
	m.mu.Lock()
	if m.snap != nil && snap.Time.Before(m.snap.Time) {
		m.mu.Unlock()
		return
	}
	m.snap = &snap
	m.mu.Unlock()
	m.evaluate()
}

// Raise opens (or updates) an incident for a problem that is no one
// service's, such as "cert/vault.example.org" or "dns": it lasts until
// Clear, across restarts. Its receivers are alerting.notify.
func (m *Manager) Raise(cause, title, detail string) error {
	m.mu.Lock()
	p := Problem{Cause: cause, State: health.Down, Title: title, Detail: detail, Receivers: m.routing.notify}
	m.mu.Unlock()
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	err = m.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketRaised).Put([]byte(cause), b) })
	if err != nil {
		return err
	}
	m.evaluate()
	return nil
}

// Clear ends what Raise(cause) started.
func (m *Manager) Clear(cause string) error {
	err := m.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketRaised).Delete([]byte(cause)) })
	if err != nil {
		return err
	}
	m.evaluate()
	return nil
}

// evaluate decides and records, in one transaction, the incidents and the
// deliveries of their notices.
func (m *Manager) evaluate() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.routing.services == nil {
		return // no config yet
	}
	problems, unknown := map[string]Problem{}, map[string]bool{}
	if m.snap != nil {
		problems, unknown = m.routing.problems(*m.snap)
	} else {
		// No snapshot yet: nothing is known of any service or the relay.
		unknown[CauseRelay] = true
		for s := range m.routing.services {
			unknown["service/"+s] = true
		}
	}
	now := m.opts.Now()
	queued := 0
	// Decided first in a read-only transaction, and again in a writable one
	// only when something changes: most evaluations (every few seconds, and
	// at every change of a check's error text) change nothing, and a
	// write is an fsync, which a Raspberry Pi's SD card pays for.
	dirty := false
	record := func(tx *bolt.Tx) error {
		write := tx.Writable()
		err := tx.Bucket(bucketRaised).ForEach(func(k, v []byte) error {
			var p Problem
			if err := json.Unmarshal(v, &p); err != nil {
				return err
			}
			p.Receivers = m.routing.notify
			problems[string(k)] = p
			return nil
		})
		if err != nil {
			return err
		}
		incidents := tx.Bucket(bucketIncidents)
		open := map[string]Incident{}
		err = incidents.ForEach(func(k, v []byte) error {
			var inc Incident
			if err := json.Unmarshal(v, &inc); err != nil {
				return err
			}
			open[string(k)] = inc
			return nil
		})
		if err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		newID := func() uint64 {
			id := uint64(1)
			if v := meta.Get([]byte("incident")); len(v) == 8 {
				id = binary.BigEndian.Uint64(v) + 1
			}
			if write {
				meta.Put([]byte("incident"), be(id))
			}
			return id
		}
		instance := string(meta.Get([]byte("instance")))
		next, notices := evaluate(now, open, problems, unknown, m.settings, newID)
		for cause, inc := range next {
			if _, ok := open[cause]; !ok && inc.Key == "" {
				inc.Key = "labgate-" + instance + "-" + strconv.FormatUint(inc.ID, 10)
				next[cause] = inc
				for i := range notices {
					if notices[i].Incident.ID == inc.ID {
						notices[i].Incident.Key = inc.Key
					}
				}
			}
		}
		for cause := range open {
			if _, ok := next[cause]; !ok {
				dirty = true
				if !write {
					continue
				}
				if err := incidents.Delete([]byte(cause)); err != nil {
					return err
				}
			}
		}
		for cause, inc := range next {
			if old, ok := open[cause]; ok && equalIncident(old, inc) {
				continue
			}
			dirty = true
			if !write {
				continue
			}
			b, err := json.Marshal(inc)
			if err != nil {
				return err
			}
			if err := incidents.Put([]byte(cause), b); err != nil {
				return err
			}
		}
		if len(notices) > 0 {
			dirty = true
		}
		if !write {
			return nil
		}
		q := tx.Bucket(bucketQueue)
		for _, n := range notices {
			msg := message(n)
			for _, r := range n.Receivers {
				seq, err := q.NextSequence()
				if err != nil {
					return err
				}
				d := Delivery{Seq: seq, Receiver: r, Message: msg, NextAttempt: now}
				b, err := json.Marshal(d)
				if err != nil {
					return err
				}
				if err := q.Put(be(seq), b); err != nil {
					return err
				}
				queued++
			}
			m.log.Info("alert", "kind", n.Kind, "cause", msg.Cause, "title", msg.Title, "receivers", n.Receivers)
		}
		return nil
	}
	err := m.db.View(record)
	if err == nil && dirty {
		err = m.db.Update(record)
	}
	if err != nil {
		m.log.Error("alert state not saved", "error", err)
		return
	}
	if queued > 0 {
		m.metrics.queue(m.queueLength())
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
}

func equalIncident(a, b Incident) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func message(n Notice) Message {
	inc := n.Incident
	prefix := inc.Key
	if prefix == "" { // an incident opened by an older labgate
		prefix = "labgate-" + strconv.FormatUint(inc.ID, 10)
	}
	return Message{
		Key:      prefix + "-" + strconv.Itoa(inc.Notices),
		Kind:     n.Kind,
		Incident: inc.ID,
		Cause:    inc.Problem.Cause,
		State:    inc.Problem.State,
		Title:    inc.Problem.Title,
		Detail:   inc.Problem.Detail,
		Services: inc.Problem.Services,
		Started:  inc.Started,
		Time:     n.Time,
	}
}

func be(n uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, n)
	return b
}

func (m *Manager) queueLength() int {
	n := 0
	_ = m.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketQueue).Stats().KeyN
		return nil
	})
	return n
}

// Incidents returns the open incidents, by cause.
func (m *Manager) Incidents() (map[string]Incident, error) {
	out := map[string]Incident{}
	err := m.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketIncidents).ForEach(func(k, v []byte) error {
			var inc Incident
			if err := json.Unmarshal(v, &inc); err != nil {
				return err
			}
			out[string(k)] = inc
			return nil
		})
	})
	return out, err
}

// Queue returns the deliveries waiting, in order.
func (m *Manager) Queue() ([]Delivery, error) {
	var out []Delivery
	err := m.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketQueue).ForEach(func(k, v []byte) error {
			var d Delivery
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			out = append(out, d)
			return nil
		})
	})
	return out, err
}

// Run delivers the queue and re-evaluates incidents now and then, until
// ctx is done. It delivers nothing before the first Update: deliveries
// queued before a restart wait for the receivers of the config.
func (m *Manager) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-m.configured:
	}
	eval := time.NewTicker(m.opts.Evaluate)
	defer eval.Stop()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-eval.C:
			m.evaluate()
			continue
		case <-m.wake:
		case <-timer.C:
		}
		next := m.deliver(ctx)
		timer.Stop()
		if !next.IsZero() {
			timer.Reset(max(next.Sub(m.opts.Now()), 0))
		}
	}
}

// deliver sends the first waiting delivery of each receiver that is due,
// until nothing is due, and returns when the next one is ("" when none).
func (m *Manager) deliver(ctx context.Context) time.Time {
	m.flush()
	for ctx.Err() == nil {
		heads, next, err := m.heads()
		if err != nil {
			m.log.Error("alert queue unreadable", "error", err)
			return m.opts.Now().Add(time.Minute)
		}
		if len(heads) == 0 {
			m.qmu.Lock()
			unsaved := len(m.unsaved)
			m.qmu.Unlock()
			if retry := m.opts.Now().Add(time.Minute); unsaved > 0 && (next.IsZero() || next.After(retry)) {
				return retry // write the outcomes again then
			}
			return next
		}
		var wg sync.WaitGroup
		for _, d := range heads {
			wg.Go(func() { m.attempt(ctx, d) })
		}
		wg.Wait()
	}
	return time.Time{}
}

// heads returns the due first delivery of each receiver, and when the
// earliest one not yet due is.
func (m *Manager) heads() ([]Delivery, time.Time, error) {
	now := m.opts.Now()
	seen := map[string]bool{}
	var due []Delivery
	var next time.Time
	m.qmu.Lock()
	unsaved := maps.Clone(m.unsaved)
	m.qmu.Unlock()
	unsavedRefs := map[string]string{}
	for _, o := range unsaved {
		if o.ref != "" {
			unsavedRefs[string(refKey(o.d.Message.Incident, o.d.Receiver))] = o.ref
		}
	}
	err := m.db.View(func(tx *bolt.Tx) error {
		refs := tx.Bucket(bucketRefs)
		return tx.Bucket(bucketQueue).ForEach(func(k, v []byte) error {
			var d Delivery
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			if o, ok := unsaved[d.Seq]; ok {
				if o.done {
					return nil // delivered, not yet off the queue
				}
				d = o.d
			}
			if seen[d.Receiver] {
				return nil // in order: the first of each receiver goes first
			}
			seen[d.Receiver] = true
			if d.NextAttempt.After(now) {
				if next.IsZero() || d.NextAttempt.Before(next) {
					next = d.NextAttempt
				}
				return nil
			}
			d.Message.Ref = string(refs.Get(refKey(d.Message.Incident, d.Receiver)))
			if ref, ok := unsavedRefs[string(refKey(d.Message.Incident, d.Receiver))]; ok && d.Message.Ref == "" {
				d.Message.Ref = ref
			}
			due = append(due, d)
			return nil
		})
	})
	return due, next, err
}

func refKey(incident uint64, receiver string) []byte {
	return []byte(strconv.FormatUint(incident, 10) + "/" + receiver)
}

// attempt sends d once and records the outcome.
func (m *Manager) attempt(ctx context.Context, d Delivery) {
	m.mu.Lock()
	s := m.senders[d.Receiver]
	m.mu.Unlock()
	var ref string
	var err error
	if s == nil {
		err = errNoReceiver
	} else {
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		ref, err = s.Send(sctx, d.Message)
		cancel()
	}
	if err != nil && ctx.Err() != nil {
		return // stopping: the delivery stays queued as it was
	}
	now := m.opts.Now()
	result := "success"
	drop := err == nil
	if err != nil {
		d.Attempts++
		d.LastError = err.Error()
		d.NextAttempt = now.Add(m.opts.Backoff(d.Attempts))
		result = "failure"
		if errors.Is(err, errNoReceiver) || now.Sub(d.Message.Time) > m.opts.MaxAge {
			drop, result = true, "dropped"
			m.log.Error("alert dropped", "receiver", d.Receiver, "title", d.Message.Title, "attempts", d.Attempts, "error", err)
		} else {
			m.log.Warn("alert delivery failed, will retry", "receiver", d.Receiver, "title", d.Message.Title,
				"attempts", d.Attempts, "retry_in", d.NextAttempt.Sub(now).Round(time.Second), "error", err)
		}
	}
	m.metrics.notification(d.Receiver, result)
	o := outcome{d: d, done: drop, ref: ref}
	if err := m.update(func(tx *bolt.Tx) error { return save(tx, o) }); err != nil {
		m.log.Error("alert queue not saved, kept in memory meanwhile", "error", err)
		m.qmu.Lock()
		m.unsaved[d.Seq] = o
		m.qmu.Unlock()
	}
	m.metrics.queue(m.queueLength())
}

// save records an outcome in the queue.
func save(tx *bolt.Tx, o outcome) error {
	d := o.d
	q := tx.Bucket(bucketQueue)
	if !o.done {
		b, err := json.Marshal(d)
		if err != nil {
			return err
		}
		return q.Put(be(d.Seq), b)
	}
	if o.ref != "" && d.Message.Ref == "" {
		if err := tx.Bucket(bucketRefs).Put(refKey(d.Message.Incident, d.Receiver), []byte(o.ref)); err != nil {
			return err
		}
	}
	if d.Message.Kind == Resolved {
		// The incident is over: its references are no longer needed.
		if err := tx.Bucket(bucketRefs).Delete(refKey(d.Message.Incident, d.Receiver)); err != nil {
			return err
		}
	}
	return q.Delete(be(d.Seq))
}

// flush writes the outcomes the database did not take before.
func (m *Manager) flush() {
	m.qmu.Lock()
	defer m.qmu.Unlock()
	if len(m.unsaved) == 0 {
		return
	}
	err := m.update(func(tx *bolt.Tx) error {
		for _, seq := range slices.Sorted(maps.Keys(m.unsaved)) {
			if err := save(tx, m.unsaved[seq]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		m.log.Error("alert queue still not saved", "deliveries", len(m.unsaved), "error", err)
		return
	}
	clear(m.unsaved)
}

var errNoReceiver = errors.New("no such receiver in the config any more")
