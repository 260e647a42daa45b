package gateway

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"time"
)

// healthy reports whether b takes requests: its last active check (if any)
// passed and no failed request marked it down in the last cooldown.
func (b *backend) healthy() bool {
	if b.checkDown.Load() {
		return false
	}
	if until := b.downUntil.Load(); until != 0 && time.Now().UnixNano() < until {
		return false
	}
	return true
}

// markDown takes b out of rotation for the cooldown after a request could
// not reach it, or until an active check passes.
func (b *backend) markDown(err error) {
	b.downUntil.Store(time.Now().Add(b.cooldown).UnixNano())
	b.report(false, "request failed", err)
}

// report logs and exports a health transition, once.
func (b *backend) report(up bool, why string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.up.Load() == up {
		return
	}
	b.up.Store(up)
	if up {
		b.svc.export.set(b.m.up, 1)
	} else {
		b.svc.export.set(b.m.up, 0)
	}
	if up {
		b.log.Info("backend up", "why", why)
	} else {
		b.log.Warn("backend down", "why", why, "error", err)
	}
}

// watch runs b's active health check every interval, or, without one (or
// when SetBackendHealth feeds it), notices when a passive cooldown ends,
// until ctx is done.
func (b *backend) watch(ctx context.Context) {
	h := b.svc.cfg.Health
	if b.svc.fed {
		h = nil
	}
	interval := time.Second
	if h != nil {
		interval = h.Interval
		b.check(ctx, h.Path, h.Timeout, h.Status)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if b.h1 != nil {
			b.h1.reap(time.Now())
		}
		if h != nil {
			b.check(ctx, h.Path, h.Timeout, h.Status)
		} else if b.healthy() {
			b.report(true, "cooldown over", nil)
		}
	}
}

// check runs one active health check: GET path within timeout, expecting
// status (0: any 2xx or 3xx).
func (b *backend) check(ctx context.Context, path string, timeout time.Duration, status int) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := b.probe(ctx, path, status)
	if ctx.Err() != nil && err != nil && context.Cause(ctx) == context.Canceled {
		return // shutting down
	}
	b.checked(err)
}

// checked applies the result of an active check: a failure takes b out of
// rotation, a pass puts it back (and ends a passive cooldown).
func (b *backend) checked(err error) {
	if err != nil {
		b.checkDown.Store(true)
		b.report(false, "health check failed", err)
		return
	}
	b.checkDown.Store(false)
	b.downUntil.Store(0)
	b.report(true, "health check passed", nil)
}

// SetBackendHealth applies the result of an active check of backend
// (scheme://host:port) of service, made by someone else, exactly as the
// gateway's own probe would (see Options.Fed): an error takes the backend
// out of rotation until a nil brings it back. Results for services that
// are not fed, or for backends the generation does not have, are ignored.
func (g *Gateway) SetBackendHealth(service, backend string, err error) {
	if b := g.byName[backendKey{service, backend}]; b != nil {
		b.checked(err)
	}
}

func (b *backend) probe(ctx context.Context, path string, status int) error {
	u := *b.url
	u.Path = path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	if hosts := b.svc.cfg.Hosts; len(hosts) > 0 {
		if _, wild := cutWildcard(hosts[0]); !wild {
			req.Host = hosts[0]
		}
	}
	req.Header.Set("User-Agent", "labgate-health")
	res, err := b.transport.RoundTrip(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	if status == 0 && (res.StatusCode < 200 || res.StatusCode > 399) || status != 0 && res.StatusCode != status {
		return &statusError{res.StatusCode}
	}
	return nil
}

type statusError struct{ code int }

func (e *statusError) Error() string { return "unexpected status " + strconv.Itoa(e.code) }
