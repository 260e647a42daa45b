package proxyproto

import (
	"bufio"
	"bytes"
	"errors"
	"testing"
)

func addSeeds(f *testing.F) {
	for _, tc := range readCases(f) {
		f.Add(tc.in)
		f.Add(append(bytes.Clone(tc.in), "payload"...))
	}
}

// FuzzRead: Read never panics, every error wraps a sentinel, it consumes only
// the header, and a header that parses re-encodes to the same value.
func FuzzRead(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		src := bytes.NewReader(data)
		br := bufio.NewReader(src)
		h, err := Read(br)
		if err != nil {
			if !errors.Is(err, ErrNoHeader) && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if h.Version != 1 && h.Version != 2 {
			t.Fatalf("version %d", h.Version)
		}
		// What is left to read (buffered, then still in src) is exactly
		// the input after the header.
		n := br.Buffered()
		consumed := len(data) - src.Len() - n
		if rest := data[consumed:]; !bytes.Equal(mustPeek(t, br, n), rest[:n]) {
			t.Fatalf("buffered bytes are not the input after the header")
		}
		checkRoundTrip(t, h)
	})
}

func mustPeek(t *testing.T, br *bufio.Reader, n int) []byte {
	b, err := br.Peek(n)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzParseV2Datagram: never panics, the payload is the tail of the input,
// and a header that parses re-encodes to the same value.
func FuzzParseV2Datagram(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		h, payload, err := ParseV2Datagram(data)
		if err != nil {
			if !errors.Is(err, ErrNoHeader) && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if !bytes.HasSuffix(data, payload) || len(payload) > len(data)-16 {
			t.Fatalf("payload is not the tail of the input")
		}
		checkRoundTrip(t, h)
	})
}
