package history

import (
	"encoding/binary"
	"errors"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bucket is what is known of a series over one span of time.
type Bucket struct {
	Start time.Time
	// Seconds spent in each state, indexed by State. Time with no result at
	// all is in none of them.
	Seconds [numStates]uint32
	// Latencies of the Up and Degraded results, in microseconds.
	Count    uint32
	SumMicro uint64
	MinMicro uint32
	MaxMicro uint32
}

// Known is the time whose state is known: up, degraded or down.
func (b Bucket) Known() time.Duration {
	return time.Duration(b.Seconds[Up]+b.Seconds[Degraded]+b.Seconds[Down]) * time.Second
}

// Uptime is the share of the known time that was up or degraded, from 0 to
// 1; -1 when nothing is known. Unknown time never counts as downtime.
func (b Bucket) Uptime() float64 {
	k := b.Seconds[Up] + b.Seconds[Degraded] + b.Seconds[Down]
	if k == 0 {
		return -1
	}
	return float64(b.Seconds[Up]+b.Seconds[Degraded]) / float64(k)
}

// Worst is the worst state seen in the bucket (Down over Degraded over Up),
// Unknown when nothing is known.
func (b Bucket) Worst() State {
	switch {
	case b.Seconds[Down] > 0:
		return Down
	case b.Seconds[Degraded] > 0:
		return Degraded
	case b.Seconds[Up] > 0:
		return Up
	}
	return Unknown
}

// Min, Avg and Max are the latencies of the bucket; 0 without any.
func (b Bucket) Min() time.Duration { return time.Duration(b.MinMicro) * time.Microsecond }
func (b Bucket) Max() time.Duration { return time.Duration(b.MaxMicro) * time.Microsecond }
func (b Bucket) Avg() time.Duration {
	if b.Count == 0 {
		return 0
	}
	return time.Duration(b.SumMicro/uint64(b.Count)) * time.Microsecond
}

func (b *Bucket) add(s State, covered time.Duration, latMicro uint32) {
	if s >= numStates {
		s = Unknown
	}
	b.Seconds[s] += uint32(covered / time.Second)
	if latMicro > 0 {
		if b.Count == 0 || latMicro < b.MinMicro {
			b.MinMicro = latMicro
		}
		b.MaxMicro = max(b.MaxMicro, latMicro)
		b.Count++
		b.SumMicro += uint64(latMicro)
	}
}

// Merge merges buckets into one that starts with the first.
func Merge(bs []Bucket) Bucket {
	var out Bucket
	for _, b := range bs {
		out.merge(b)
	}
	if len(bs) > 0 {
		out.Start = bs[0].Start
	}
	return out
}

func (b *Bucket) merge(o Bucket) {
	for i := range b.Seconds {
		b.Seconds[i] += o.Seconds[i]
	}
	if o.Count > 0 {
		if b.Count == 0 || o.MinMicro < b.MinMicro {
			b.MinMicro = o.MinMicro
		}
		b.MaxMicro = max(b.MaxMicro, o.MaxMicro)
		b.Count += o.Count
		b.SumMicro += o.SumMicro
	}
}

// encode writes the bucket as varints: four state counters, then count,
// sum, min and max. Most are small or zero: 8 to 20 bytes.
func (b *Bucket) encode() []byte {
	out := make([]byte, 0, 24)
	for _, s := range b.Seconds {
		out = binary.AppendUvarint(out, uint64(s))
	}
	out = binary.AppendUvarint(out, uint64(b.Count))
	out = binary.AppendUvarint(out, b.SumMicro)
	out = binary.AppendUvarint(out, uint64(b.MinMicro))
	return binary.AppendUvarint(out, uint64(b.MaxMicro))
}

var errCorrupt = errors.New("health history: a corrupt bucket")

func (b *Bucket) decode(v []byte) error {
	var vals [8]uint64
	for i := range vals {
		x, n := binary.Uvarint(v)
		if n <= 0 {
			return errCorrupt
		}
		vals[i], v = x, v[n:]
	}
	for i := range b.Seconds {
		b.Seconds[i] = uint32(min(vals[i], math.MaxUint32))
	}
	b.Count = uint32(min(vals[4], math.MaxUint32))
	b.SumMicro = vals[5]
	b.MinMicro = uint32(min(vals[6], math.MaxUint32))
	b.MaxMicro = uint32(min(vals[7], math.MaxUint32))
	return nil
}

// Result is one raw result.
type Result struct {
	Time    time.Time
	State   State
	Latency time.Duration
}

// Days returns n daily buckets (UTC days) of a series, oldest first, the
// last being the day of end. Days without data are empty buckets.
func (s *Store) Days(service, check string, end time.Time, n int) ([]Bucket, error) {
	last := end.UTC().Truncate(Day)
	first := last.Add(-time.Duration(n-1) * Day)
	return s.buckets(bucketDaily, service, check, first, n, Day)
}

// Fine returns the five-minute buckets of a series from from (rounded down)
// to to, oldest first, with empty buckets where there is no data.
func (s *Store) Fine(service, check string, from, to time.Time) ([]Bucket, error) {
	first := from.UTC().Truncate(FineStep)
	n := int(to.Sub(first)/FineStep) + 1
	if n <= 0 {
		return nil, nil
	}
	return s.buckets(bucketFine, service, check, first, n, FineStep)
}

func (s *Store) buckets(top []byte, service, check string, first time.Time, n int, step time.Duration) ([]Bucket, error) {
	if n <= 0 {
		return nil, nil
	}
	out := make([]Bucket, n)
	for i := range out {
		out[i].Start = first.Add(time.Duration(i) * step)
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		b, _ := series(tx, top, seriesKey(service, check), false)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Seek(timeKey(first)); k != nil; k, v = c.Next() {
			i := int(keyTime(k).Sub(first) / step)
			if i >= n {
				break
			}
			if i < 0 {
				continue
			}
			var bk Bucket
			if err := bk.decode(v); err != nil {
				return err
			}
			bk.Start = out[i].Start
			out[i].merge(bk)
		}
		return nil
	})
	return out, err
}

// Summary merges the daily buckets of the n days ending with end's day: the
// uptime badge's number.
func (s *Store) Summary(service, check string, end time.Time, n int) (Bucket, error) {
	days, err := s.Days(service, check, end, n)
	return Merge(days), err
}

// Raw returns the raw results of a series from from to to, oldest first.
func (s *Store) Raw(service, check string, from, to time.Time) ([]Result, error) {
	var out []Result
	err := s.db.View(func(tx *bolt.Tx) error {
		b, _ := series(tx, bucketRaw, seriesKey(service, check), false)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		end := to.Unix()
		for k, v := c.Seek(timeKey(from)); k != nil && keyTime(k).Unix() <= end; k, v = c.Next() {
			if len(v) < 1 {
				return errCorrupt
			}
			lat, _ := binary.Uvarint(v[1:])
			out = append(out, Result{Time: keyTime(k), State: State(v[0]), Latency: time.Duration(lat) * time.Microsecond})
		}
		return nil
	})
	return out, err
}

// Last returns the newest raw result of a series; ok is false without one.
func (s *Store) Last(service, check string) (r Result, ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		b, _ := series(tx, bucketRaw, seriesKey(service, check), false)
		if b == nil {
			return nil
		}
		k, v := b.Cursor().Last()
		if k == nil || len(v) < 1 {
			return nil
		}
		lat, _ := binary.Uvarint(v[1:])
		r, ok = Result{Time: keyTime(k), State: State(v[0]), Latency: time.Duration(lat) * time.Microsecond}, true
		return nil
	})
	return r, ok, err
}
