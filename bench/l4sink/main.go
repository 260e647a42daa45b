// Command l4sink is the far end of the relay benchmarks (bench/relay.sh): a
// TCP server that optionally reads and drops a PROXY v2 header from each
// connection, then either echoes what it gets or splices it to a target.
//
//	l4sink -listen 127.0.0.1:7000                                 # echo
//	l4sink -listen 127.0.0.1:7001 -proxy                          # echo, after a PROXY v2 header
//	l4sink -listen 127.0.0.1:7001 -proxy -once                    # echo one read, then close
//	l4sink -listen 127.0.0.1:7002 -proxy -forward 127.0.0.1:5201  # strip the header, splice to iperf3
//
// iperf3 cannot take a PROXY header, so relays that always send one (labgate
// relay, HAProxy send-proxy-v2) are measured through -forward, both of them,
// so that the sink's cost is the same on each side of a comparison. The
// header is read with exact-length reads (16 bytes, then its announced
// length), so no byte after it is buffered here and the rest of the
// connection goes through splice(2) (io.Copy between *net.TCPConn).
//
// A connection whose header is LOCAL is a relay's own health probe (labgate
// relay sends one with `HEAD /` to each target every 10 s): it is answered
// here with an empty HTTP 204 and never reaches the echo or the target, where
// it would break a running iperf3 test.
package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"time"
)

// once makes echo close after answering one read.
var once bool

// sigV2 is the PROXY protocol v2 signature.
var sigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")

func main() {
	listen := flag.String("listen", "127.0.0.1:7000", "listen `address`")
	proxy := flag.Bool("proxy", false, "each connection starts with a PROXY v2 header: read and drop it")
	forward := flag.String("forward", "", "splice each connection to this `address` instead of echoing")
	flag.BoolVar(&once, "once", false, "echo one read, then close (the server closes first, as an HTTP/1.0 server or an SMTP server after QUIT would)")
	flag.Parse()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	var target *net.TCPAddr
	if *forward != "" {
		if target, err = net.ResolveTCPAddr("tcp", *forward); err != nil {
			log.Fatal(err)
		}
	}
	log.Printf("l4sink on %s (proxy %v, forward %q)", ln.Addr(), *proxy, *forward)
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			log.Print(err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go serve(c.(*net.TCPConn), *proxy, target)
	}
}

func serve(c *net.TCPConn, proxy bool, target *net.TCPAddr) {
	defer c.Close()
	if proxy {
		local, err := dropHeader(c)
		if err != nil {
			fmt.Fprintf(os.Stderr, "l4sink: %s: %v\n", c.RemoteAddr(), err)
			return
		}
		if local {
			_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
			return
		}
	}
	if target == nil {
		echo(c)
		return
	}
	up, err := net.DialTCP("tcp", nil, target)
	if err != nil {
		fmt.Fprintf(os.Stderr, "l4sink: %v\n", err)
		return
	}
	defer up.Close()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, c) // splice
		_ = up.CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(c, up)
	_ = c.CloseWrite()
	<-done
}

// dropHeader reads one PROXY v2 header, and not a byte more. It reports
// whether the header's command is LOCAL.
func dropHeader(c net.Conn) (local bool, err error) {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var h [16]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return false, fmt.Errorf("reading the PROXY header: %w", err)
	}
	if !bytes.Equal(h[:12], sigV2) || h[12]>>4 != 2 {
		return false, errors.New("no PROXY v2 header")
	}
	n := int64(binary.BigEndian.Uint16(h[14:]))
	if m, err := io.CopyN(io.Discard, c, n); err != nil {
		return false, fmt.Errorf("PROXY header: %d of %d bytes after the fixed part: %w", m, n, err)
	}
	return h[12]&0x0f == 0, c.SetReadDeadline(time.Time{})
}

// echo writes back what it reads until the peer closes.
func echo(c *net.TCPConn) {
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil || once {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
