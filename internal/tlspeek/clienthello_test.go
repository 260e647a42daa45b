package tlspeek

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// captureHello returns the TLS records of the ClientHello crypto/tls sends
// with cfg.
func captureHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tls.Client(client, cfg).Handshake()
	}()
	var rec []byte
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(server, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(server, body); err != nil {
		t.Fatal(err)
	}
	rec = append(append(rec, hdr...), body...)
	server.Close()
	client.Close()
	<-done
	return rec
}

// splitRecords re-frames the handshake message in rec into records of at
// most size bytes of payload.
func splitRecords(rec []byte, size int) []byte {
	msg := rec[5:]
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, recordHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

func TestParseClientHello(t *testing.T) {
	tests := []struct {
		name string
		cfg  *tls.Config
		want ClientHello
	}{
		{"sni and alpn", &tls.Config{ServerName: "Vault.Example.org", NextProtos: []string{"h2", "http/1.1"}},
			ClientHello{ServerName: "vault.example.org", ALPN: []string{"h2", "http/1.1"}}},
		{"sni only", &tls.Config{ServerName: "a.b"}, ClientHello{ServerName: "a.b"}},
		{"ip: no sni", &tls.Config{ServerName: "192.0.2.1", NextProtos: []string{"acme-tls/1"}},
			ClientHello{ALPN: []string{"acme-tls/1"}}},
		{"tls 1.2 only", &tls.Config{ServerName: "old.example.org", MaxVersion: tls.VersionTLS12},
			ClientHello{ServerName: "old.example.org"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.InsecureSkipVerify = true
			rec := captureHello(t, tt.cfg)
			for _, size := range []int{maxRecordLen, 100, 1} {
				buf := splitRecords(rec, size)
				// Every prefix is incomplete; the whole is complete.
				for i := range len(buf) {
					if _, st := Scan(buf[:i], make([]byte, 0, MaxPeek)); st != More {
						t.Fatalf("record size %d: prefix %d: status %d, want more", size, i, st)
					}
				}
				msg, st := Scan(buf, make([]byte, 0, MaxPeek))
				if st != Complete {
					t.Fatalf("record size %d: status %d", size, st)
				}
				got, err := ParseClientHello(msg)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("record size %d (-want +got):\n%s", size, diff)
				}
			}
		})
	}
}

func TestScanHelloNotTLS(t *testing.T) {
	for _, in := range []string{
		"GET / HTTP/1.1\r\n",
		"SSH-2.0-x",
		"\x16\x02\x00\x00\x05",                 // not version 3
		"\x16\x03\x01\x00\x00",                 // empty record
		"\x16\x03\x01\x40\x01",                 // record over 16 KiB
		"\x16\x03\x01\x00\x04\x02\x00\x00\x00", // a ServerHello
		"\x17\x03\x03\x00\x10",                 // application data
	} {
		if _, st := Scan([]byte(in), nil); st != NotTLS {
			t.Errorf("%q: status %d, want not TLS", in, st)
		}
	}
}

func TestParseClientHelloStrict(t *testing.T) {
	rec := captureHello(t, &tls.Config{ServerName: "x.example.org", NextProtos: []string{"h2"}, InsecureSkipVerify: true})
	msg := rec[5:]
	// Find the server_name extension and make a copy of msg with it twice.
	ext := findExt(t, msg, extServerName)
	dup := append(append([]byte(nil), msg...), ext...)
	fixLengths(dup, len(ext))
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"truncated", msg[:len(msg)-1]},
		{"trailing byte", append(append([]byte(nil), msg...), 0)},
		{"duplicate server_name", dup},
		{"server hello", append([]byte{2}, msg[1:]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseClientHello(tt.in)
			if !errors.Is(err, ErrNotHello) {
				t.Errorf("err = %v, want a ClientHello error", err)
			}
		})
	}
	for _, name := range []string{"", "a..b", ".a", "a.", "a b", "ä.example", string(make([]byte, 254))} {
		if validHostName([]byte(name)) {
			t.Errorf("validHostName(%q) = true", name)
		}
	}
}

// findExt returns the whole extension (type, length, data) of type typ in a
// ClientHello message.
func findExt(t *testing.T, msg []byte, typ uint16) []byte {
	b := cursor(msg[4:])
	b.skip(2 + 32)
	b.vec(1)
	b.vec(2)
	b.vec(1)
	exts, _ := b.vec(2)
	for len(exts) > 0 {
		start := exts
		et, _ := exts.u16()
		exts.vec(2)
		if et == typ {
			return start[:len(start)-len(exts)]
		}
	}
	t.Fatalf("no extension %d", typ)
	return nil
}

// fixLengths adds extra to the handshake and extensions lengths of msg, whose
// extensions block runs to its end.
func fixLengths(msg []byte, extra int) {
	n := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]) + extra
	msg[1], msg[2], msg[3] = byte(n>>16), byte(n>>8), byte(n)
	b := cursor(msg[4:])
	b.skip(2 + 32)
	b.vec(1)
	b.vec(2)
	b.vec(1)
	off := len(msg) - len(b)
	e := int(msg[off])<<8 | int(msg[off+1]) + extra
	msg[off], msg[off+1] = byte(e>>8), byte(e)
}

// FuzzParseClientHello: the parser never panics, and what it returns is
// plausible: a valid lowercase host name and non-empty ALPN protocols; the
// scanner never claims a message longer than its input allows.
func FuzzParseClientHello(f *testing.F) {
	for _, cfg := range []*tls.Config{
		{ServerName: "vault.example.org", NextProtos: []string{"h2", "http/1.1"}},
		{ServerName: "a.b", MaxVersion: tls.VersionTLS12},
		{ServerName: "192.0.2.1"},
	} {
		cfg.InsecureSkipVerify = true
		rec := captureHello(f, cfg)
		f.Add(rec[5:])
		f.Add(splitRecords(rec, 64))
	}
	f.Add([]byte("\x16\x03\x01\x00\x04\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		if msg, st := Scan(in, make([]byte, 0, MaxPeek)); st == Complete {
			if len(msg) > len(in) {
				t.Fatalf("message of %d bytes from %d", len(msg), len(in))
			}
			ParseClientHello(msg)
		}
		ch, err := ParseClientHello(in)
		if err != nil {
			if !errors.Is(err, ErrNotHello) {
				t.Fatalf("error %v does not wrap ErrNotHello", err)
			}
			return
		}
		if ch.ServerName != "" && !validHostName([]byte(ch.ServerName)) {
			t.Errorf("server name %q", ch.ServerName)
		}
		for _, p := range ch.ALPN {
			if p == "" || len(p) > 255 {
				t.Errorf("alpn %q", p)
			}
		}
	})
}
