package relay

import (
	"bufio"
	"context"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/labgate/labgate/internal/proxyproto"
)

// benchServer accepts connections; with header it reads a PROXY header
// first. Each connection answers one small request and closes (churn), or
// discards everything (sink).
func benchServer(b *testing.B, header, sink bool) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				var r io.Reader = c
				if header {
					br := bufio.NewReaderSize(c, 4096)
					if _, err := proxyproto.Read(br); err != nil {
						return
					}
					r = br
				}
				if sink {
					io.Copy(io.Discard, r)
					return
				}
				var req [4]byte
				if _, err := io.ReadFull(r, req[:]); err != nil {
					return
				}
				c.Write([]byte("pong"))
			}()
		}
	}()
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// benchRelay starts a relay in front of target; dialer, if not nil,
// replaces the default one (to compare dial timeouts).
func benchRelay(b *testing.B, target string, dialer *net.Dialer) string {
	r, err := New(Options{Metrics: NewMetrics(prometheus.NewRegistry()), ProbeInterval: -1, MaxConnsPerSource: 1 << 20,
		GracePeriod: time.Second,
		Routes:      []Route{{Name: "b", Proto: "tcp", Listen: "127.0.0.1:0", Target: target}}})
	if err != nil {
		b.Fatal(err)
	}
	if dialer != nil {
		r.cfg.dialer = dialer
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	for r.Addr("b") == nil {
		time.Sleep(time.Millisecond)
	}
	return r.Addr("b").String()
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRelayConn measures connection churn: each operation is a new
// connection, a 4-byte request, a 4-byte answer and the close. It reports
// connections per second and the CPU time of the whole process per
// connection (client, relay and server share it: compare "relay" with
// "direct" for the relay's share).
func BenchmarkRelayConn(b *testing.B) {
	run := func(b *testing.B, addr string) {
		b.SetParallelism(4)
		b.ResetTimer()
		start, cpu0 := time.Now(), cpuTime()
		b.RunParallel(func(pb *testing.PB) {
			buf := make([]byte, 16)
			for pb.Next() {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Error(err)
					return
				}
				c.Write([]byte("ping"))
				if _, err := io.ReadFull(c, buf[:4]); err != nil {
					b.Error(err)
				}
				c.Close()
			}
		})
		elapsed, cpu := time.Since(start), cpuTime()-cpu0
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "conns/s")
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/conn")
	}
	b.Run("direct", func(b *testing.B) { run(b, benchServer(b, false, false)) })
	b.Run("relay", func(b *testing.B) { run(b, benchRelay(b, benchServer(b, true, false), nil)) })
	b.Run("relay-dial-timer", func(b *testing.B) {
		run(b, benchRelay(b, benchServer(b, true, false), &net.Dialer{Timeout: 5 * time.Second, KeepAlive: -1}))
	})
}

// BenchmarkRelayThroughput measures one stream through the relay (splice)
// into a sink, in 1 MiB writes.
func BenchmarkRelayThroughput(b *testing.B) {
	run := func(b *testing.B, addr string) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		chunk := make([]byte, 1<<20)
		b.SetBytes(int64(len(chunk)))
		b.ResetTimer()
		cpu0 := cpuTime()
		for b.Loop() {
			if _, err := c.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N)*1024/1e6, "cpu-s/GiB")
	}
	b.Run("direct", func(b *testing.B) { run(b, benchServer(b, false, true)) })
	b.Run("relay", func(b *testing.B) { run(b, benchRelay(b, benchServer(b, true, true), nil)) })
}
