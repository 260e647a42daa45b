// Package history keeps the results of health checks in an embedded
// database (bbolt, pure Go) in state_dir, small enough to keep forever
// without care: raw results for a short while, then roll-ups.
//
// Every series (a service, or one check of a service) is kept three ways:
//
//   - raw results, one per check run, for Retention.Raw (48 h);
//   - five-minute buckets for Retention.Fine (14 days);
//   - daily buckets (UTC days) for Retention.Daily (400 days).
//
// A bucket holds the seconds spent in each state (up, degraded, down,
// unknown) and the count, sum, minimum and maximum of check latencies. Each
// result covers the time since the previous result of its series, unless
// that is longer than MaxGap: such a gap (labgate was stopped) counts as no
// data, not as downtime. Roll-ups are written with each result, so nothing is
// lost when raw results expire; Compact (run by Run on a timer) deletes what
// is older than the retention. bbolt reuses freed pages, so the file
// reaches a steady size and stays there.
package history

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/labgate/labgate/internal/statefile"
)

// State is the state of a service or a check in one result.
type State uint8

// The states, as health reports them. Unknown never counts as downtime.
const (
	Unknown State = iota
	Up
	Degraded
	Down
	numStates
)

var stateNames = [numStates]string{"unknown", "up", "degraded", "down"}

func (s State) String() string {
	if s >= numStates {
		return "unknown"
	}
	return stateNames[s]
}

// ParseState returns the State named s ("up", "degraded", "down"); anything
// else is Unknown.
func ParseState(s string) State {
	for i, n := range stateNames {
		if n == s {
			return State(i)
		}
	}
	return Unknown
}

// Sample is one result to record.
type Sample struct {
	Service string
	Check   string // "" for the service's own state
	Time    time.Time
	State   State
	// Latency of the check; 0 when it has none. Kept for Up and Degraded
	// results only: a timeout says nothing about how fast a service is.
	Latency time.Duration
}

// Retention says how long each resolution is kept.
type Retention struct {
	Raw   time.Duration // raw results; default 48h
	Fine  time.Duration // five-minute buckets; default 14 days
	Daily time.Duration // daily buckets; default 400 days
}

// DefaultRetention keeps raw results 48 hours, five-minute buckets 14 days
// and daily buckets 400 days.
var DefaultRetention = Retention{Raw: 48 * time.Hour, Fine: 14 * 24 * time.Hour, Daily: 400 * 24 * time.Hour}

// MaxGap is the longest time one result covers: after a longer silence
// (labgate stopped), the first result covers nothing and the silence is no
// data.
const MaxGap = 10 * time.Minute

// FineStep is the width of the five-minute buckets.
const FineStep = 5 * time.Minute

// Day is the width of the daily buckets (UTC days).
const Day = 24 * time.Hour

// FileName is the database's name in state_dir.
const FileName = "history.db"

// Options configure a Store.
type Options struct {
	Retention Retention // zero fields take the defaults
	// CompactEvery is how often Run deletes expired data; default 1h.
	CompactEvery time.Duration
	Now          func() time.Time // default time.Now
	Log          *slog.Logger
}

// Store is the history database. Its methods are safe for concurrent use.
type Store struct {
	db    *bolt.DB
	opts  Options
	aside string // where Open moved a damaged database, if it did
}

var (
	bucketRaw   = []byte("raw")
	bucketFine  = []byte("5m")
	bucketDaily = []byte("1d")
)

// Open opens (creating it and its directory if needed) the database at path.
// Only one process may have it open: a second Open waits up to 5 s for the
// lock, then fails. A damaged file (power loss, a worn SD card) is moved
// aside to history.db.damaged-<UTC time>, never deleted, and a new empty
// history starts: the history is worth less than a gateway that starts.
// Damaged says where it went.
func Open(path string, opts Options) (*Store, error) {
	if opts.Retention.Raw <= 0 {
		opts.Retention.Raw = DefaultRetention.Raw
	}
	if opts.Retention.Fine <= 0 {
		opts.Retention.Fine = DefaultRetention.Fine
	}
	if opts.Retention.Daily <= 0 {
		opts.Retention.Daily = DefaultRetention.Daily
	}
	if opts.CompactEvery <= 0 {
		opts.CompactEvery = time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("health history: %w", err)
	}
	var aside string
	if cerr := statefile.CheckBolt(path); errors.Is(cerr, statefile.ErrDamaged) {
		var err error
		if aside, err = statefile.MoveAside(path, opts.Now()); err != nil {
			return nil, fmt.Errorf("health history %s is %v and %w", path, cerr, err)
		}
		opts.Log.Error("the health history was damaged: the status page's uptime and latency history is lost and starts again empty. The damaged copy is kept for you to inspect or delete",
			"file", path, "damaged_copy", aside, "error", cerr)
	} else if cerr != nil {
		return nil, fmt.Errorf("health history %s: %w", path, cerr)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("health history %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketRaw, bucketFine, bucketDaily} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("health history %s: %w", path, err)
	}
	return &Store{db: db, opts: opts, aside: aside}, nil
}

// Damaged is where Open moved a damaged database aside (the history it
// held is lost), "" when it found none.
func (s *Store) Damaged() string { return s.aside }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Path is the database file.
func (s *Store) Path() string { return s.db.Path() }

// Size is the size of the database file in bytes.
func (s *Store) Size() (int64, error) {
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n, err
}

// Run deletes expired data every CompactEvery until ctx is done.
func (s *Store) Run(ctx context.Context) error {
	t := time.NewTicker(s.opts.CompactEvery)
	defer t.Stop()
	for {
		if err := s.Compact(); err != nil {
			s.opts.Log.Warn("compacting the health history failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Record stores results, in order. Concurrent calls share a transaction
// (one write to disk for the results of checks that end together).
func (s *Store) Record(smps ...Sample) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		for _, smp := range smps {
			if err := record(tx, smp); err != nil {
				return err
			}
		}
		return nil
	})
}

// RecordAll stores results in one transaction, in order.
func (s *Store) RecordAll(smps []Sample) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, smp := range smps {
			if err := record(tx, smp); err != nil {
				return err
			}
		}
		return nil
	})
}

// seriesKey names the sub-bucket of a series.
func seriesKey(service, check string) []byte {
	return []byte(service + "\x00" + check)
}

// timeKey is a bucket or result key: seconds since the epoch, big-endian,
// so keys sort by time. Two results of a series in one second keep the last.
func timeKey(t time.Time) []byte {
	var k [4]byte
	binary.BigEndian.PutUint32(k[:], uint32(max(0, min(t.Unix(), math.MaxUint32))))
	return k[:]
}

func keyTime(k []byte) time.Time { return time.Unix(int64(binary.BigEndian.Uint32(k)), 0).UTC() }

func series(tx *bolt.Tx, top []byte, key []byte, create bool) (*bolt.Bucket, error) {
	b := tx.Bucket(top)
	if !create {
		return b.Bucket(key), nil
	}
	sb, err := b.CreateBucketIfNotExists(key)
	if err != nil {
		return nil, err
	}
	sb.FillPercent = 0.95 // keys mostly arrive in time order
	return sb, nil
}

func record(tx *bolt.Tx, smp Sample) error {
	if smp.Service == "" {
		return errors.New("health history: a sample without a service")
	}
	key := seriesKey(smp.Service, smp.Check)
	raw, err := series(tx, bucketRaw, key, true)
	if err != nil {
		return err
	}
	t := smp.Time.Truncate(time.Second)
	// The result covers the time since the previous one, unless that is
	// longer than MaxGap: then nothing is known of the silence.
	// The previous result is the latest not after t, not the latest of
	// all: one result from a clock that ran ahead (then was set right) must
	// not make every later one cover nothing until that time comes.
	var covered time.Duration
	tk := timeKey(t)
	c := raw.Cursor()
	k, _ := c.Seek(tk)
	if k == nil {
		k, _ = c.Last()
	} else if !bytes.Equal(k, tk) {
		k, _ = c.Prev()
	}
	if k != nil {
		if prev := keyTime(k); t.After(prev) && t.Sub(prev) <= MaxGap {
			covered = t.Sub(prev)
		}
	}
	lat := uint32(0)
	if smp.State == Up || smp.State == Degraded {
		lat = uint32(min(max(smp.Latency.Microseconds(), 0), math.MaxUint32))
	}
	v := binary.AppendUvarint([]byte{byte(smp.State)}, uint64(lat))
	if err := raw.Put(tk, v); err != nil {
		return err
	}
	for _, r := range []struct {
		top  []byte
		step time.Duration
	}{{bucketFine, FineStep}, {bucketDaily, Day}} {
		b, err := series(tx, r.top, key, true)
		if err != nil {
			return err
		}
		k := timeKey(t.Truncate(r.step))
		var a Bucket
		if old := b.Get(k); old != nil {
			if err := a.decode(old); err != nil {
				return err
			}
		}
		a.add(smp.State, covered, lat)
		if err := b.Put(k, a.encode()); err != nil {
			return err
		}
	}
	return nil
}

// Compact deletes raw results, five-minute and daily buckets older than
// their retention.
func (s *Store) Compact() error {
	now := s.opts.Now()
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, r := range []struct {
			top []byte
			ttl time.Duration
		}{{bucketRaw, s.opts.Retention.Raw}, {bucketFine, s.opts.Retention.Fine}, {bucketDaily, s.opts.Retention.Daily}} {
			cutoff := timeKey(now.Add(-r.ttl))
			top := tx.Bucket(r.top)
			var empty [][]byte
			err := top.ForEachBucket(func(name []byte) error {
				b := top.Bucket(name)
				c := b.Cursor()
				for k, _ := c.First(); k != nil && bytes.Compare(k, cutoff) < 0; k, _ = c.First() {
					if err := c.Delete(); err != nil {
						return err
					}
				}
				if k, _ := c.First(); k == nil {
					empty = append(empty, bytes.Clone(name))
				}
				return nil
			})
			if err != nil {
				return err
			}
			// A series with nothing left (a removed service) goes away.
			for _, name := range empty {
				if err := top.DeleteBucket(name); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
