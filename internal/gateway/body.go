package gateway

import (
	"errors"
	"io"
	"net/http"
	"time"
)

// idleBody is a client's request body that fails when no byte of it
// arrives for timeout: http.Server bounds the wait for request headers but
// not for the body, and a client sending its body a byte at a time would
// otherwise hold its connection and a backend connection for as long as it
// likes. Its errors are *clientBodyError: the client's fault, never the
// backend's.
type idleBody struct {
	body    io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	armed   bool  // a read deadline is set
	err     error // the read error, once the body failed
}

// clientBodyFailed reports whether reading r's body failed (stalled or
// broke off). The client's server cancels the request's context then,
// and the upstream transport may report that instead of the body's error.
func clientBodyFailed(r *http.Request, err error) bool {
	if cbe := (*clientBodyError)(nil); errors.As(err, &cbe) {
		return true
	}
	b, ok := r.Body.(*idleBody)
	return ok && b.err != nil
}

// limitBodyIdle makes r's body an idleBody, when it has one.
func limitBodyIdle(w http.ResponseWriter, r *http.Request, timeout time.Duration) {
	if timeout <= 0 || !hasBody(r) {
		return
	}
	r.Body = &idleBody{body: r.Body, rc: http.NewResponseController(w), timeout: timeout}
}

func (b *idleBody) Read(p []byte) (int, error) {
	if b.rc.SetReadDeadline(time.Now().Add(b.timeout)) == nil {
		b.armed = true
	}
	n, err := b.body.Read(p)
	switch {
	case err == io.EOF:
		// The deadline must not outlive the body, or the server's watch
		// for a closed connection would cancel the request while its
		// response is still being sent.
		if b.armed {
			b.armed = false
			_ = b.rc.SetReadDeadline(time.Time{})
		}
	case err != nil:
		// Left armed: the server drains what is left of the body when
		// the handler returns, and must not wait for it either.
		err = &clientBodyError{err}
		b.err = err
	}
	return n, err
}

// Close leaves the deadline armed when the body did not end: the server
// drains the rest after the handler returns, within the same bound.
func (b *idleBody) Close() error { return b.body.Close() }
