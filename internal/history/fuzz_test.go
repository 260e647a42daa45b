package history

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// FuzzBucketDecode feeds arbitrary bytes to the bucket decoder, as a
// damaged file would: it fails cleanly or yields a bucket that encodes
// back to a value decoding to the same bucket.
func FuzzBucketDecode(f *testing.F) {
	b := Bucket{Seconds: [numStates]uint32{0, 300, 0, 0}, Count: 10, SumMicro: 123456, MinMicro: 9000, MaxMicro: 20000}
	f.Add(b.encode())
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, v []byte) {
		var a Bucket
		if err := a.decode(v); err != nil {
			return
		}
		var c Bucket
		if err := c.decode(a.encode()); err != nil || c != a {
			t.Fatalf("decode(encode(%+v)) = %+v, %v", a, c, err)
		}
		_ = a.Uptime()
		_ = a.Avg()
	})
}
