// Command statefiles measures what checking a bbolt file of state_dir
// costs at start (statefile.CheckBolt: open read-only, read every page,
// run bbolt's consistency check), on a file the size of a year of health
// history (36.9 MB for 100 services, see docs/benchmarks.md).
//
// Usage: go run ./bench/statefiles [-mb 37] [-runs 5]
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/labgate/labgate/internal/statefile"
)

func main() {
	mb := flag.Int("mb", 37, "size of the database to check, in MB")
	runs := flag.Int("runs", 5, "checks to time")
	flag.Parse()
	if err := run(*mb, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "statefiles:", err)
		os.Exit(1)
	}
}

func run(mb, runs int) error {
	dir, err := os.MkdirTemp("", "labgate-bench-statefiles-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "history.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err
	}
	// Series like the history's: a bucket per series, small values.
	val := make([]byte, 64)
	var n uint64
	for size := int64(0); size < int64(mb)<<20; {
		err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(fmt.Appendf(nil, "series-%d", n%200))
			if err != nil {
				return err
			}
			for range 5000 {
				n++
				k := binary.BigEndian.AppendUint64(nil, n)
				binary.LittleEndian.PutUint64(val, rand.Uint64())
				if err := b.Put(k, val); err != nil {
					return err
				}
			}
			size = tx.Size()
			return nil
		})
		if err != nil {
			return err
		}
	}
	db.Close()
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	var times []time.Duration
	for range runs {
		start := time.Now()
		if err := statefile.CheckBolt(path); err != nil {
			return err
		}
		times = append(times, time.Since(start))
	}
	slices.Sort(times)
	fmt.Printf("CheckBolt on a %.1f MB bbolt file (%d keys): median %v, min %v, max %v over %d runs\n",
		float64(st.Size())/1e6, n, times[len(times)/2].Round(time.Millisecond), times[0].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond), runs)
	return nil
}
