package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/labgate/labgate/internal/proxyproto"
)

// probeRequest follows the LOCAL header: any HTTP response proves the
// gateway reachable and serving.
const probeRequest = "HEAD / HTTP/1.1\r\nHost: labgate-probe\r\nUser-Agent: labgate-relay-probe\r\nConnection: close\r\n\r\n"

// defaultProbeTimeout bounds a Probe whose context has no deadline.
const defaultProbeTimeout = 5 * time.Second

// ErrNotHTTP is wrapped by Probe's error when the target answered with
// something that is not an HTTP response.
var ErrNotHTTP = errors.New("relay: the gateway's answer is not HTTP")

// Probe checks that the gateway at target is reachable: it connects, sends a
// PROXY v2 LOCAL header (the relay speaking for itself, as the specification
// asks for health checks) and `HEAD / HTTP/1.1` with Host labgate-probe, and
// accepts any HTTP response, whatever its status. Without a deadline in ctx
// it gives up after 5s.
func Probe(ctx context.Context, target string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultProbeTimeout)
		defer cancel()
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	h := proxyproto.Header{Command: proxyproto.Local}
	req := append(h.AppendV2(make([]byte, 0, 128)), probeRequest...)
	if _, err := c.Write(req); err != nil {
		return err
	}
	var status [12]byte // "HTTP/1.1 200"
	if _, err := io.ReadFull(c, status[:]); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("no answer from %s: %w", target, ctx.Err())
		}
		return fmt.Errorf("no HTTP answer from %s: %w", target, err)
	}
	s := status[:]
	if string(s[:5]) != "HTTP/" || s[8] != ' ' || !isDigit(s[9]) || !isDigit(s[10]) || !isDigit(s[11]) {
		return fmt.Errorf("%w: %s answered %q", ErrNotHTTP, target, s)
	}
	return nil
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// startProbes probes cfg's targets every ProbeInterval until stopProbes is
// called. r.mu is held.
func (r *Relay) startProbes(cfg *config) {
	targets := cfg.opts.ProbeTargets
	if targets == nil {
		for _, rc := range cfg.routes {
			if rc.Proto == "tcp" && !slices.Contains(targets, rc.Target) {
				targets = append(targets, rc.Target)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.stopProbes = cancel
	next := make(map[string]bool)
	for _, t := range targets {
		next[t] = true
	}
	for t := range r.probeTarget {
		if !next[t] {
			r.metrics.gatewayUp.DeleteLabelValues(t)
		}
	}
	r.probeTarget = next
	interval := cfg.opts.ProbeInterval
	if interval < 0 {
		for _, t := range targets {
			r.metrics.gatewayUp.DeleteLabelValues(t)
		}
		r.probeTarget = nil
		return
	}
	for _, t := range targets {
		r.probes.Add(1)
		go r.probeLoop(ctx, t, interval)
	}
}

func (r *Relay) probeLoop(ctx context.Context, target string, interval time.Duration) {
	defer r.probes.Done()
	g := r.metrics.gatewayUp.WithLabelValues(target)
	was := -1
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, min(interval, defaultProbeTimeout))
		err := Probe(pctx, target)
		cancel()
		if ctx.Err() != nil {
			return
		}
		up := 0
		if err == nil {
			up = 1
		}
		g.Set(float64(up))
		if up != was {
			if up == 1 {
				r.log.Info("relay: gateway reachable", "target", target)
			} else {
				r.log.Warn("relay: gateway unreachable", "target", target, "err", err)
			}
			was = up
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
