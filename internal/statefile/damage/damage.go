// Package damage makes the damaged copies of a state file that the tests
// of its owners start labgate with: what a power loss or a worn SD card
// leaves behind.
package damage

import "math/rand/v2"

// PageSize is bbolt's page size on the machines labgate runs on.
const PageSize = 4096

// File returns damaged versions of a file's content, by name: cut to half,
// empty, random bytes of the same length, and a stretch in the middle
// overwritten with random bytes.
func File(data []byte) map[string][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	garbled := append([]byte(nil), data...)
	for i := len(garbled) / 3; i < 2*len(garbled)/3; i++ {
		garbled[i] = byte(r.Uint32())
	}
	return map[string][]byte{
		"half":    data[:len(data)/2],
		"empty":   {},
		"random":  random(r, max(len(data), 64)),
		"garbled": garbled,
	}
}

// Bolt returns File's damages of a bbolt database plus two of its own: the
// pages after the two meta pages overwritten with random bytes ("pages"),
// and both meta pages garbled ("meta").
func Bolt(data []byte) map[string][]byte {
	out := File(data)
	r := rand.New(rand.NewPCG(3, 4))
	pages := append([]byte(nil), data...)
	for i := 2 * PageSize; i < len(pages); i++ {
		pages[i] = byte(r.Uint32())
	}
	out["pages"] = pages
	meta := append([]byte(nil), data...)
	for _, off := range []int{0, PageSize} {
		for i := off + 16; i < off+64 && i < len(meta); i++ {
			meta[i] = byte(r.Uint32())
		}
	}
	out["meta"] = meta
	return out
}

func random(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}
