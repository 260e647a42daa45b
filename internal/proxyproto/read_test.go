package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"io"
	"net/netip"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// hexb decodes hex with spaces, "|" separators and 'quoted' ASCII runs, so
// golden headers can be written down as they appear in the spec.
func hexb(t testing.TB, s string) []byte {
	t.Helper()
	var out []byte
	for len(s) > 0 {
		switch s[0] {
		case ' ', '|', '\n', '\t':
			s = s[1:]
		case '\'':
			end := strings.IndexByte(s[1:], '\'')
			out = append(out, s[1:1+end]...)
			s = s[end+2:]
		default:
			b, err := hex.DecodeString(s[:2])
			if err != nil {
				t.Fatalf("hexb %q: %v", s, err)
			}
			out = append(out, b...)
			s = s[2:]
		}
	}
	return out
}

const sig = "0d0a0d0a 000d0a51 5549540a"

// withCRC fills in the CRC32C TLV value, which must be the last 4 bytes.
func withCRC(b []byte) []byte {
	b = bytes.Clone(b)
	clear(b[len(b)-4:])
	binary.BigEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
	return b
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

type readCase struct {
	name    string
	in      []byte
	want    *Header
	wantErr []error // every one must match errors.Is
}

func readCases(t testing.TB) []readCase {
	tcp4 := &Header{Version: 2, Command: Proxy, Transport: TCP, Source: ap("192.0.2.1:56324"), Destination: ap("198.51.100.2:443")}
	withTLVs := *tcp4
	withTLVs.ALPN = []byte("h2")
	withTLVs.Authority = "example.org"
	withTLVs.UniqueID = []byte("abc")
	unix := make([]byte, 216)
	copy(unix, "/run/haproxy.sock")
	long := strings.Repeat("a", 128)
	return []readCase{
		// Version 1, in the format curl --haproxy-protocol and HAProxy send.
		{name: "v1 curl TCP4", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n"),
			want: &Header{Version: 1, Command: Proxy, Transport: TCP, Source: ap("1.2.3.4:1111"), Destination: ap("5.6.7.8:2222")}},
		{name: "v1 TCP6", in: []byte("PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n"),
			want: &Header{Version: 1, Command: Proxy, Transport: TCP, Source: ap("[2001:db8::1]:65535"), Destination: ap("[2001:db8::2]:0")}},
		{name: "v1 TCP6 v4-mapped", in: []byte("PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n"),
			want: &Header{Version: 1, Command: Proxy, Transport: TCP, Source: ap("[::ffff:1.2.3.4]:1"), Destination: ap("[::1]:2")}},
		{name: "v1 UNKNOWN", in: []byte("PROXY UNKNOWN\r\n"), want: &Header{Version: 1, Command: Proxy}},
		{name: "v1 UNKNOWN longest line (107 bytes)", in: []byte("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
			want: &Header{Version: 1, Command: Proxy}},
		{name: "v1 line over 107 bytes", in: []byte("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 655350\r\n"), wantErr: []error{ErrInvalid}},
		{name: "v1 LF only", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\n"), wantErr: []error{ErrInvalid}},
		{name: "v1 too few fields", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1111\r\n"), wantErr: []error{ErrInvalid}},
		{name: "v1 too many fields", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222 3\r\n"), wantErr: []error{ErrInvalid}},
		{name: "v1 double space", in: []byte("PROXY TCP4  1.2.3.4 5.6.7.8 1111 2222\r\n"), wantErr: []error{ErrInvalid}},
		{name: "v1 port leading zero", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 01111 2222\r\n"), wantErr: []error{ErrInvalid}},
		{name: "v1 port too big", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1111 65536\r\n"), wantErr: []error{ErrInvalid}},
		{name: "v1 port sign", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n"), wantErr: []error{ErrInvalid}},
		{name: "v1 TCP4 with IPv6", in: []byte("PROXY TCP4 ::1 ::1 1 2\r\n"), wantErr: []error{ErrInvalid}},
		{name: "v1 TCP6 with IPv4", in: []byte("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"), wantErr: []error{ErrInvalid}},
		{name: "v1 IPv4 leading zero", in: []byte("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"), wantErr: []error{ErrInvalid}},
		{name: "v1 zone", in: []byte("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), wantErr: []error{ErrInvalid}},
		{name: "v1 bad protocol", in: []byte("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"), wantErr: []error{ErrInvalid}},
		{name: "v1 truncated", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222"), wantErr: []error{ErrInvalid, io.ErrUnexpectedEOF}},
		{name: "v1 signature only", in: []byte("PROXY"), wantErr: []error{ErrInvalid, io.ErrUnexpectedEOF}},
		{name: "v1 lowercase", in: []byte("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), wantErr: []error{ErrNoHeader}},
		{name: "HTTP POST", in: []byte("POST / HTTP/1.1\r\n\r\n"), wantErr: []error{ErrNoHeader}},

		// Version 2, byte layout of doc/proxy-protocol.txt section 2.2.
		{name: "v2 TCP4", in: hexb(t, sig+"21 11 000c c0000201 c6336402 dc04 01bb"), want: tcp4},
		{name: "v2 UDP4", in: hexb(t, sig+"21 12 000c c0000201 c6336402 dc04 01bb"),
			want: &Header{Version: 2, Command: Proxy, Transport: UDP, Source: ap("192.0.2.1:56324"), Destination: ap("198.51.100.2:443")}},
		{name: "v2 TCP6", in: hexb(t, sig+"21 21 0024 20010db8000000000000000000000001 20010db8000000000000000000000002 dc04 01bb"),
			want: &Header{Version: 2, Command: Proxy, Transport: TCP, Source: ap("[2001:db8::1]:56324"), Destination: ap("[2001:db8::2]:443")}},
		{name: "v2 UDP6 v4-mapped", in: hexb(t, sig+"21 22 0024 00000000000000000000ffff01020304 00000000000000000000000000000001 0001 0002"),
			want: &Header{Version: 2, Command: Proxy, Transport: UDP, Source: ap("[::ffff:1.2.3.4]:1"), Destination: ap("[::1]:2")}},
		{name: "v2 LOCAL without addresses (HAProxy health check)", in: hexb(t, sig+"20 00 0000"), want: &Header{Version: 2, Command: Local}},
		{name: "v2 LOCAL with addresses ignored", in: hexb(t, sig+"20 11 000c c0000201 c6336402 dc04 01bb"), want: &Header{Version: 2, Command: Local}},
		{name: "v2 LOCAL with unknown family ignored", in: hexb(t, sig+"20 41 0003 010203"), want: &Header{Version: 2, Command: Local}},
		{name: "v2 PROXY UNSPEC", in: hexb(t, sig+"21 00 0000"), want: &Header{Version: 2, Command: Proxy}},
		{name: "v2 UNIX stream treated as UNSPEC", in: append(hexb(t, sig+"21 31 00d8"), unix...), want: &Header{Version: 2, Command: Proxy}},
		{name: "v2 UNIX dgram treated as UNSPEC, TLV kept", in: append(append(hexb(t, sig+"21 32 00dd"), unix...), hexb(t, "02 0002 'ab'")...),
			want: &Header{Version: 2, Command: Proxy, Authority: "ab"}},
		{name: "v2 TCP4 with TLVs", in: hexb(t, sig+"21 11 002e c0000201 c6336402 dc04 01bb | 01 0002 'h2' | 02 000b 'example.org' | 05 0003 'abc' | 04 0002 0000 | e0 0001 ff"),
			want: &withTLVs},
		{name: "v2 empty TLVs are absent", in: hexb(t, sig+"21 11 0015 c0000201 c6336402 dc04 01bb | 01 0000 | 02 0000 | 05 0000"), want: tcp4},
		{name: "v2 longest UNIQUE_ID", in: append(hexb(t, sig+"21 11 008f c0000201 c6336402 dc04 01bb 05 0080"), long...),
			want: func() *Header { h := *tcp4; h.UniqueID = []byte(long); return &h }()},
		{name: "v2 CRC32C valid", in: withCRC(hexb(t, sig+"21 11 0013 c0000201 c6336402 dc04 01bb | 03 0004 00000000")), want: tcp4},
		{name: "v2 CRC32C wrong", in: func() []byte {
			b := withCRC(hexb(t, sig+"21 11 0013 c0000201 c6336402 dc04 01bb | 03 0004 00000000"))
			b[len(b)-1] ^= 1
			return b
		}(), wantErr: []error{ErrInvalid}},
		{name: "v2 CRC32C of length 3", in: hexb(t, sig+"21 11 0012 c0000201 c6336402 dc04 01bb | 03 0003 000000"), wantErr: []error{ErrInvalid}},
		{name: "v2 version 1", in: hexb(t, sig+"11 11 000c c0000201 c6336402 dc04 01bb"), wantErr: []error{ErrInvalid}},
		{name: "v2 command 2", in: hexb(t, sig+"22 11 000c c0000201 c6336402 dc04 01bb"), wantErr: []error{ErrInvalid}},
		{name: "v2 family 0x41", in: hexb(t, sig+"21 41 0000"), wantErr: []error{ErrInvalid}},
		{name: "v2 AF_INET without transport", in: hexb(t, sig+"21 10 000c c0000201 c6336402 dc04 01bb"), wantErr: []error{ErrInvalid}},
		{name: "v2 transport 3", in: hexb(t, sig+"21 13 000c c0000201 c6336402 dc04 01bb"), wantErr: []error{ErrInvalid}},
		{name: "v2 length short for TCP4", in: hexb(t, sig+"21 11 0008 c0000201 c6336402"), wantErr: []error{ErrInvalid}},
		{name: "v2 length short for TCP6", in: hexb(t, sig+"21 21 000c c0000201 c6336402 dc04 01bb"), wantErr: []error{ErrInvalid}},
		{name: "v2 length over cap", in: hexb(t, sig+"21 11 fff0"), wantErr: []error{ErrInvalid}},
		{name: "v2 truncated body", in: hexb(t, sig+"21 11 000c c0000201 c633"), wantErr: []error{ErrInvalid, io.ErrUnexpectedEOF}},
		{name: "v2 truncated fixed part", in: hexb(t, sig+"21 11"), wantErr: []error{ErrInvalid, io.ErrUnexpectedEOF}},
		{name: "v2 truncated signature", in: hexb(t, "0d0a0d0a 000d"), wantErr: []error{ErrInvalid, io.ErrUnexpectedEOF}},
		{name: "v2 bad signature", in: hexb(t, "0d0a0d0a 000d0a51 5549540b 21 11 0000"), wantErr: []error{ErrNoHeader}},
		{name: "v2 truncated TLV", in: hexb(t, sig+"21 11 000e c0000201 c6336402 dc04 01bb 01 00"), wantErr: []error{ErrInvalid}},
		{name: "v2 TLV past the end", in: hexb(t, sig+"21 11 0010 c0000201 c6336402 dc04 01bb 01 0002 'h'"), wantErr: []error{ErrInvalid}},
		{name: "v2 duplicate ALPN", in: hexb(t, sig+"21 11 0016 c0000201 c6336402 dc04 01bb 01 0001 'a' 01 0001 'b'"), wantErr: []error{ErrInvalid}},
		{name: "v2 UNIQUE_ID over 128", in: append(hexb(t, sig+"21 11 0090 c0000201 c6336402 dc04 01bb 05 0081"), long+"a"...), wantErr: []error{ErrInvalid}},
		{name: "v2 AUTHORITY not UTF-8", in: hexb(t, sig+"21 11 0010 c0000201 c6336402 dc04 01bb 02 0001 ff"), wantErr: []error{ErrInvalid}},

		// Clients that speak directly.
		{name: "empty", in: nil, wantErr: []error{ErrNoHeader, io.EOF}},
		{name: "TLS ClientHello", in: hexb(t, "16 0301 00f1 01"), wantErr: []error{ErrNoHeader}},
		{name: "SSH banner", in: []byte("SSH-2.0-OpenSSH_9.2\r\n"), wantErr: []error{ErrNoHeader}},
	}
}

func TestRead(t *testing.T) {
	const payload = "GET / HTTP/1.1\r\n\r\n"
	readers := map[string]func([]byte) *bufio.Reader{
		"bufio":          func(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) },
		"one byte":       func(b []byte) *bufio.Reader { return bufio.NewReader(iotest.OneByteReader(bytes.NewReader(b))) },
		"small buffer":   func(b []byte) *bufio.Reader { return bufio.NewReaderSize(bytes.NewReader(b), 16) },
		"half at a time": func(b []byte) *bufio.Reader { return bufio.NewReader(iotest.HalfReader(bytes.NewReader(b))) },
	}
	for _, tc := range readCases(t) {
		for rname, newReader := range readers {
			t.Run(tc.name+"/"+rname, func(t *testing.T) {
				in := tc.in
				if tc.want != nil {
					in = append(bytes.Clone(in), payload...)
				}
				br := newReader(in)
				h, err := Read(br)
				for _, want := range tc.wantErr {
					if !errors.Is(err, want) {
						t.Errorf("Read error = %v, want one wrapping %v", err, want)
					}
				}
				if tc.wantErr == nil && err != nil {
					t.Fatalf("Read: %v", err)
				}
				if diff := cmp.Diff(tc.want, h, cmpAddr); diff != "" {
					t.Errorf("Read header (-want +got):\n%s", diff)
				}
				if tc.want != nil {
					rest, _ := io.ReadAll(br)
					if string(rest) != payload {
						t.Errorf("after the header: %q, want %q", rest, payload)
					}
				}
			})
		}
	}
}

// TestReadNoHeaderConsumesNothing: a caller can still tell what the client sent.
func TestReadNoHeaderConsumesNothing(t *testing.T) {
	for _, in := range []string{"GET / HTTP/1.1\r\n", "POST / HTTP/1.1\r\n", "\r\n\r\nhello"} {
		br := bufio.NewReader(strings.NewReader(in))
		if _, err := Read(br); !errors.Is(err, ErrNoHeader) {
			t.Fatalf("Read(%q) = %v, want ErrNoHeader", in, err)
		}
		if got, _ := io.ReadAll(br); string(got) != in {
			t.Errorf("Read(%q) consumed input, %q left", in, got)
		}
	}
}

func TestAppendV2(t *testing.T) {
	tcp4 := Header{Command: Proxy, Transport: TCP, Source: ap("192.0.2.1:56324"), Destination: ap("198.51.100.2:443")}
	tests := []struct {
		name string
		h    Header
		want string
	}{
		{"TCP4", tcp4, sig + "21 11 000c c0000201 c6336402 dc04 01bb"},
		{"UDP4", Header{Command: Proxy, Transport: UDP, Source: ap("192.0.2.1:56324"), Destination: ap("198.51.100.2:443")},
			sig + "21 12 000c c0000201 c6336402 dc04 01bb"},
		{"TCP6", Header{Command: Proxy, Transport: TCP, Source: ap("[2001:db8::1]:56324"), Destination: ap("[2001:db8::2]:443")},
			sig + "21 21 0024 20010db8000000000000000000000001 20010db8000000000000000000000002 dc04 01bb"},
		{"mixed families become TCP6", Header{Command: Proxy, Transport: TCP, Source: ap("1.2.3.4:1"), Destination: ap("[::1]:2")},
			sig + "21 21 0024 00000000000000000000ffff01020304 00000000000000000000000000000001 0001 0002"},
		{"LOCAL", Header{Command: Local}, sig + "20 00 0000"},
		{"LOCAL drops addresses", Header{Command: Local, Transport: TCP, Source: ap("1.2.3.4:1"), Destination: ap("5.6.7.8:2")}, sig + "20 00 0000"},
		{"PROXY UNSPEC", Header{Command: Proxy, Source: ap("1.2.3.4:1"), Destination: ap("5.6.7.8:2")}, sig + "21 00 0000"},
		{"PROXY TCP without addresses", Header{Command: Proxy, Transport: TCP}, sig + "21 00 0000"},
		{"TLVs", func() Header {
			h := tcp4
			h.ALPN, h.Authority, h.UniqueID = []byte("h2"), "example.org", []byte("abc")
			return h
		}(), sig + "21 11 0025 c0000201 c6336402 dc04 01bb | 01 0002 'h2' | 02 000b 'example.org' | 05 0003 'abc'"},
		{"invalid TLV values left out", func() Header {
			h := tcp4
			h.Authority, h.UniqueID = "\xff", make([]byte, 129)
			return h
		}(), sig + "21 11 000c c0000201 c6336402 dc04 01bb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("xy")
			got := tc.h.AppendV2(prefix)
			want := append([]byte("xy"), hexb(t, tc.want)...)
			if !bytes.Equal(got, want) {
				t.Errorf("AppendV2 =\n%x\nwant\n%x", got, want)
			}
		})
	}
}

// TestRoundTrip: every header Read accepts re-encodes to the same value.
func TestRoundTrip(t *testing.T) {
	for _, tc := range readCases(t) {
		if tc.want == nil {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			checkRoundTrip(t, tc.want)
		})
	}
}

func checkRoundTrip(t *testing.T, h *Header) {
	t.Helper()
	enc := h.AppendV2(nil)
	got, rest, err := ParseV2Datagram(enc)
	if err != nil {
		t.Fatalf("re-parse of %x: %v", enc, err)
	}
	if len(rest) != 0 {
		t.Fatalf("re-parse left %d bytes", len(rest))
	}
	want := *h
	want.Version = 2
	if diff := cmp.Diff(&want, got, cmpAddr); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestParseV2Datagram(t *testing.T) {
	dgram := hexb(t, sig+"21 12 000c c0000201 c6336402 dc04 0035 'dns query'")
	tests := []struct {
		name        string
		in          []byte
		want        *Header
		wantPayload string
		wantErr     error
	}{
		{"UDP4 with payload", dgram, &Header{Version: 2, Command: Proxy, Transport: UDP, Source: ap("192.0.2.1:56324"), Destination: ap("198.51.100.2:53")}, "dns query", nil},
		{"header only", dgram[:28], &Header{Version: 2, Command: Proxy, Transport: UDP, Source: ap("192.0.2.1:56324"), Destination: ap("198.51.100.2:53")}, "", nil},
		{"LOCAL", hexb(t, sig+"20 00 0000 'x'"), &Header{Version: 2, Command: Local}, "x", nil},
		{"v1 not allowed", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), nil, "", ErrNoHeader},
		{"no header", []byte("dns query"), nil, "", ErrNoHeader},
		{"empty", nil, nil, "", ErrNoHeader},
		{"signature prefix", dgram[:5], nil, "", ErrInvalid},
		{"truncated addresses", dgram[:20], nil, "", ErrInvalid},
		{"truncated fixed part", dgram[:14], nil, "", ErrInvalid},
		{"bad version", hexb(t, sig+"31 12 0000"), nil, "", ErrInvalid},
		{"length over cap", append(hexb(t, sig+"21 00 1001"), make([]byte, 4097)...), nil, "", ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, payload, err := ParseV2Datagram(tc.in)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("error = %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, h, cmpAddr); diff != "" {
				t.Errorf("header (-want +got):\n%s", diff)
			}
			if string(payload) != tc.wantPayload {
				t.Errorf("payload = %q, want %q", payload, tc.wantPayload)
			}
		})
	}
}

func TestHeaderDoesNotAliasInput(t *testing.T) {
	in := hexb(t, sig+"21 11 0017 c0000201 c6336402 dc04 01bb | 01 0002 'h2' | 05 0003 'abc'")
	h, _, err := ParseV2Datagram(in)
	if err != nil {
		t.Fatal(err)
	}
	clear(in)
	if string(h.ALPN) != "h2" || string(h.UniqueID) != "abc" {
		t.Errorf("header changed with its input: %+v", h)
	}
	if h.ALPN = append(h.ALPN, 'x'); string(h.UniqueID) != "abc" {
		t.Errorf("appending to ALPN overwrote UniqueID")
	}
}

func TestStrings(t *testing.T) {
	got := []string{Local.String(), Proxy.String(), Command(7).String(), Unspec.String(), TCP.String(), UDP.String(), Transport(9).String()}
	want := []string{"LOCAL", "PROXY", "Command(7)", "UNSPEC", "TCP", "UDP", "Transport(9)"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Error(diff)
	}
}

func BenchmarkReadV2(b *testing.B) {
	for _, bc := range []struct {
		name string
		in   string
	}{
		{"TCP4", sig + "21 11 000c c0000201 c6336402 dc04 01bb"},
		{"TCP6", sig + "21 21 0024 20010db8000000000000000000000001 20010db8000000000000000000000002 dc04 01bb"},
		{"TCP4+TLVs", sig + "21 11 0025 c0000201 c6336402 dc04 01bb | 01 0002 'h2' | 02 000b 'example.org' | 05 0003 'abc'"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			in := hexb(b, bc.in)
			r := bytes.NewReader(in)
			br := bufio.NewReader(r)
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				r.Reset(in)
				br.Reset(r)
				if _, err := Read(br); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkReadV1(b *testing.B) {
	in := []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n")
	r := bytes.NewReader(in)
	br := bufio.NewReader(r)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(in)
		br.Reset(r)
		if _, err := Read(br); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendV2(b *testing.B) {
	h := &Header{Command: Proxy, Transport: TCP, Source: ap("[2001:db8::1]:56324"), Destination: ap("[2001:db8::2]:443"), ALPN: []byte("h2"), Authority: "example.org"}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = h.AppendV2(buf[:0])
	}
}

var cmpAddr = cmpopts.EquateComparable(netip.AddrPort{})
