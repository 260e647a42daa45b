package tlspeek

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"testing"
	"time"
)

// TestPeekThenTLS: after Peek, the returned conn still carries a whole TLS
// handshake, and Peeked holds exactly what was read.
func TestPeekThenTLS(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	done := make(chan error, 1)
	go func() {
		c := tls.Client(client, &tls.Config{ServerName: "pt.lab.test", NextProtos: []string{"h2"}, InsecureSkipVerify: true})
		err := c.Handshake()
		if err == nil {
			_, err = c.Write([]byte("ping"))
		}
		done <- err
	}()
	ch, pc, err := Peek(server, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if ch.ServerName != "pt.lab.test" || len(ch.ALPN) != 1 || ch.ALPN[0] != "h2" {
		t.Fatalf("hello %+v", ch)
	}
	p := pc.(*Conn)
	if len(p.Peeked()) == 0 || p.Peeked()[0] != recordHandshake || p.NetConn() != server {
		t.Fatalf("peeked %d bytes", len(p.Peeked()))
	}
	srv := tls.Server(pc, &tls.Config{Certificates: []tls.Certificate{testCert(t)}})
	buf := make([]byte, 4)
	if _, err := io.ReadFull(srv, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestPeekNotTLS(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	go client.Write([]byte("GET / HTTP/1.1\r\n"))
	_, pc, err := Peek(server, time.Second)
	if !errors.Is(err, ErrNotHello) {
		t.Fatalf("err = %v", err)
	}
	buf := make([]byte, 3)
	if _, err := io.ReadFull(pc, buf); err != nil || !bytes.Equal(buf, []byte("GET")) {
		t.Fatalf("replay %q, %v", buf, err)
	}
}

func TestPeekTimeout(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	go client.Write([]byte{recordHandshake, 3, 1})
	start := time.Now()
	_, pc, err := Peek(server, 50*time.Millisecond)
	if err == nil || errors.Is(err, ErrNotHello) {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
	if got := pc.(*Conn).Peeked(); !bytes.Equal(got, []byte{recordHandshake, 3, 1}) {
		t.Fatalf("peeked %x", got)
	}
}

// testCert returns a self-signed ECDSA certificate for pt.lab.test.
func testCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		DNSNames:     []string{"pt.lab.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
