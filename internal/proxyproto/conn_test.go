package proxyproto

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// pair returns a connected client and the accepted server side over 127.0.0.1.
func pair(t *testing.T) (client net.Conn, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); s.Close() })
	return client, s.(*net.TCPConn)
}

type errRecorder struct {
	mu    sync.Mutex
	peers []net.Addr
	errs  []error
}

func (r *errRecorder) record(peer net.Addr, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.peers = append(r.peers, peer)
	r.errs = append(r.errs, err)
}

func TestConn(t *testing.T) {
	big := &Header{Command: Proxy, Transport: TCP, Source: ap("[2001:db8::7]:4242"), Destination: ap("[2001:db8::1]:443"),
		Authority: strings.Repeat("a", 200), UniqueID: bytes.Repeat([]byte("u"), 128)}
	tests := []struct {
		name       string
		send       []byte
		wantRemote string // "" = the socket's peer
		wantLocal  string // "" = the socket's address
		wantErr    error
	}{
		{name: "v1 curl with payload", send: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\nhello"), wantRemote: "1.2.3.4:1111", wantLocal: "5.6.7.8:2222"},
		{name: "v2 TCP4 with payload", send: hexb(t, sig+"21 11 000c c0000201 c6336402 dc04 01bb 'hello'"), wantRemote: "192.0.2.1:56324", wantLocal: "198.51.100.2:443"},
		{name: "v2 longer than the read-ahead", send: append(big.AppendV2(nil), "hello"...), wantRemote: "[2001:db8::7]:4242", wantLocal: "[2001:db8::1]:443"},
		{name: "v2 TCP6 from a dual-stack relay", send: append((&Header{Command: Proxy, Transport: TCP, Source: ap("[::ffff:192.0.2.1]:4242"), Destination: ap("[::ffff:198.51.100.2]:443")}).AppendV2(nil), "hello"...),
			wantRemote: "192.0.2.1:4242", wantLocal: "198.51.100.2:443"},
		{name: "v1 TCP6 mapped", send: []byte("PROXY TCP6 ::ffff:1.2.3.4 ::ffff:5.6.7.8 1111 2222\r\nhello"), wantRemote: "1.2.3.4:1111", wantLocal: "5.6.7.8:2222"},
		{name: "v2 LOCAL", send: hexb(t, sig+"20 00 0000 'hello'")},
		{name: "v1 UNKNOWN", send: []byte("PROXY UNKNOWN\r\nhello")},
		{name: "no header", send: []byte("GET / HTTP/1.1\r\n\r\n"), wantErr: ErrNoHeader},
		{name: "garbled v2", send: hexb(t, sig+"31 11 000c"), wantErr: ErrInvalid},
		{name: "nothing sent", wantErr: os.ErrDeadlineExceeded},
		{name: "half a header", send: []byte("PROXY TCP4 1.2."), wantErr: os.ErrDeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client, server := pair(t)
			var rec errRecorder
			c := NewConn(server, 200*time.Millisecond, rec.record)
			if _, err := client.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			if !errors.Is(tc.wantErr, os.ErrDeadlineExceeded) {
				client.(*net.TCPConn).CloseWrite()
			}
			got, err := io.ReadAll(c)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Read error = %v, want %v", err, tc.wantErr)
				}
				if len(rec.errs) != 1 || rec.peers[0].String() != client.LocalAddr().String() {
					t.Errorf("onError calls = %v %v, want one for %v", rec.peers, rec.errs, client.LocalAddr())
				}
				if _, err := c.Read(make([]byte, 1)); !errors.Is(err, tc.wantErr) {
					t.Errorf("second Read error = %v", err)
				}
				// The server side was closed: the client sees EOF.
				client.SetReadDeadline(time.Now().Add(time.Second))
				if n, err := client.Read(make([]byte, 1)); n != 0 || (err != io.EOF && !errors.Is(err, errConnReset)) {
					t.Errorf("client Read after refusal = %d, %v; want EOF", n, err)
				}
				if c.RemoteAddr().String() != client.LocalAddr().String() {
					t.Errorf("RemoteAddr = %v, want the socket peer %v", c.RemoteAddr(), client.LocalAddr())
				}
				return
			}
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if string(got) != "hello" {
				t.Errorf("payload = %q, want hello", got)
			}
			wantRemote, wantLocal := tc.wantRemote, tc.wantLocal
			if wantRemote == "" {
				wantRemote = client.LocalAddr().String()
			}
			if wantLocal == "" {
				wantLocal = server.LocalAddr().String()
			}
			if g := c.RemoteAddr().String(); g != wantRemote {
				t.Errorf("RemoteAddr = %s, want %s", g, wantRemote)
			}
			if g := c.LocalAddr().String(); g != wantLocal {
				t.Errorf("LocalAddr = %s, want %s", g, wantLocal)
			}
			if len(rec.errs) != 0 {
				t.Errorf("onError called: %v", rec.errs)
			}
		})
	}
}

// TestConnServerSpeaksFirst: a peer that sends only the header and waits
// (SSH, SMTP) gets its header parsed at once, not at the timeout.
func TestConnServerSpeaksFirst(t *testing.T) {
	for _, hdr := range [][]byte{
		[]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n"),
		[]byte("PROXY UNKNOWN\r\n"),
		hexb(t, sig+"21 11 000c c0000201 c6336402 dc04 01bb"),
		hexb(t, sig+"20 00 0000"),
	} {
		client, server := pair(t)
		c := NewConn(server, 10*time.Second, nil)
		client.Write(hdr)
		start := time.Now()
		if _, err := c.Header(); err != nil {
			t.Fatalf("Header(%q): %v", hdr, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Header(%q) took %v", hdr, d)
		}
		c.Write([]byte("banner"))
		buf := make([]byte, 6)
		if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "banner" {
			t.Errorf("client read %q, %v", buf, err)
		}
	}
}

// TestConnDeadlines: a read deadline set before the header is read (as
// net/http does) survives the header's own deadline.
func TestConnDeadlines(t *testing.T) {
	t.Run("user deadline kept after the header", func(t *testing.T) {
		client, server := pair(t)
		c := NewConn(server, 10*time.Second, nil)
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		client.Write([]byte("PROXY UNKNOWN\r\n"))
		start := time.Now()
		_, err := c.Read(make([]byte, 1))
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read error = %v, want deadline exceeded", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Read took %v", d)
		}
	})
	t.Run("header deadline cleared after the header", func(t *testing.T) {
		client, server := pair(t)
		c := NewConn(server, 100*time.Millisecond, nil)
		client.Write([]byte("PROXY UNKNOWN\r\n"))
		if _, err := c.Header(); err != nil {
			t.Fatal(err)
		}
		go func() {
			time.Sleep(300 * time.Millisecond)
			client.Write([]byte("x"))
		}()
		if _, err := c.Read(make([]byte, 1)); err != nil {
			t.Fatalf("Read after the header timeout passed: %v", err)
		}
	})
	t.Run("user deadline shorter than the header timeout", func(t *testing.T) {
		_, server := pair(t)
		c := NewConn(server, 10*time.Second, nil)
		c.SetDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := c.Header(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Header error = %v, want deadline exceeded", err)
		}
	})
}

// spyWriter records which reader io.Copy hands its ReadFrom.
type spyWriter struct {
	net.Conn
	readerTypes []string
}

func (w *spyWriter) ReadFrom(r io.Reader) (int64, error) {
	w.readerTypes = append(w.readerTypes, fmt.Sprintf("%T", r))
	return w.Conn.(io.ReaderFrom).ReadFrom(r)
}

// TestConnCopy: io.Copy through a Conn relays everything, the bytes read past
// the header first, and reaches the *net.TCPConn fast path (splice).
func TestConnCopy(t *testing.T) {
	client, server := pair(t)
	dstClient, dstServer := pair(t)
	c := NewConn(server, time.Second, nil)
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	go func() {
		client.Write(append([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n"), payload...))
		client.(*net.TCPConn).CloseWrite()
	}()
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(dstServer)
		done <- b
	}()
	spy := &spyWriter{Conn: dstClient}
	n, err := io.Copy(spy, c)
	if err != nil || n != int64(len(payload)) {
		t.Fatalf("io.Copy = %d, %v; want %d", n, err, len(payload))
	}
	dstClient.(*net.TCPConn).CloseWrite()
	if got := <-done; !bytes.Equal(got, payload) {
		t.Fatalf("relayed %d bytes, not the payload", len(got))
	}
	if len(spy.readerTypes) != 1 || !strings.Contains(spy.readerTypes[0], "net.tcpConn") {
		t.Errorf("ReadFrom got readers %v, want the TCPConn itself", spy.readerTypes)
	}

	// ReadFrom passes through too.
	c2 := NewConn(dstClient, time.Second, nil)
	if _, err := c2.ReadFrom(strings.NewReader("")); err != nil {
		t.Errorf("ReadFrom: %v", err)
	}
}

// TestConnConcurrent: RemoteAddr, Header and Read race for the header.
func TestConnConcurrent(t *testing.T) {
	client, server := pair(t)
	c := NewConn(server, time.Second, nil)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if got := c.RemoteAddr().String(); got != "1.2.3.4:1111" {
				t.Errorf("RemoteAddr = %s", got)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
		})
	}
	wg.Go(func() {
		buf := make([]byte, 2)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi" {
			t.Errorf("Read = %q, %v", buf, err)
		}
	})
	client.Write([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\nhi"))
	wg.Wait()
}
