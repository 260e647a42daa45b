package health

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A Checker runs one check once. A nil error passes; a *Warning passes with
// a reason to call the service degraded (slow, certificate expiring, one of
// several backends failing); any other error fails.
type Checker interface {
	Check(ctx context.Context) error
}

// Warning is the error of a check that passed, but not well.
type Warning struct{ Msg string }

func (w *Warning) Error() string { return w.Msg }

// DialFunc connects like net.Dialer.DialContext.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// HTTPCheck requests URL (through Dial when set) and judges the answer.
type HTTPCheck struct {
	URLs []*url.URL // each target; the check passes when one does (a warning when not all do)
	Host string     // the Host header; "" keeps the URL's
	// TLS verifies https URLs: the certificate must be for TLS.ServerName or,
	// when that is empty, the URL's host, as the gateway's proxy verifies a
	// backend (an inside check decides the backend's rotation).
	TLS  *tls.Config
	Dial DialFunc // nil: a plain dialer

	Status      int    // 0: any 2xx or 3xx
	Body        string // must be contained
	JSONField   string // dotted path
	JSONEquals  string
	MaxLatency  time.Duration
	MinDaysLeft int
	Now         func() time.Time

	// Observe, if set, is told the outcome of each URL after every run: nil,
	// a *Warning or the failure. It is not told when the run was canceled
	// (the monitor stopping, the check replaced): that says nothing of the URL.
	Observe func(u *url.URL, err error)

	once sync.Once
	tr   *http.Transport
}

// Check implements Checker. Several URLs (the backends of a service) are
// requested at once, each within the whole timeout: one that hangs does
// not fail the others.
func (c *HTTPCheck) Check(ctx context.Context) error {
	results := make([]error, len(c.URLs))
	if len(c.URLs) == 1 {
		results[0] = c.one(ctx, c.URLs[0])
	} else {
		var wg sync.WaitGroup
		for i, u := range c.URLs {
			wg.Go(func() { results[i] = c.one(ctx, u) })
		}
		wg.Wait()
	}
	if c.Observe != nil && context.Cause(ctx) != context.Canceled {
		for i, u := range c.URLs {
			c.Observe(u, results[i])
		}
	}
	var errs []error
	var warn error
	for i, u := range c.URLs {
		err := results[i]
		var w *Warning
		switch {
		case err == nil:
		case errors.As(err, &w):
			warn = err
		default:
			if len(c.URLs) > 1 {
				err = fmt.Errorf("%s: %w", u.Host, err)
			}
			errs = append(errs, err)
		}
	}
	switch {
	case len(errs) == len(c.URLs):
		return errors.Join(errs...)
	case len(errs) > 0:
		return &Warning{Msg: fmt.Sprintf("%d of %d backends failing: %v", len(errs), len(c.URLs), errors.Join(errs...))}
	}
	return warn
}

func (c *HTTPCheck) one(ctx context.Context, u *url.URL) error {
	c.once.Do(c.init)
	tr := c.tr
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	if c.Host != "" {
		req.Host = c.Host
	}
	req.Header.Set("User-Agent", "labgate-health")
	start := time.Now()
	res, err := tr.RoundTrip(req)
	if err != nil {
		return simplify(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("reading the answer: %w", simplify(err))
	}
	took := time.Since(start)
	if c.Status == 0 && (res.StatusCode < 200 || res.StatusCode > 399) || c.Status != 0 && res.StatusCode != c.Status {
		want := "2xx or 3xx"
		if c.Status != 0 {
			want = strconv.Itoa(c.Status)
		}
		return fmt.Errorf("status %d (want %s)", res.StatusCode, want)
	}
	if c.Body != "" && !strings.Contains(string(body), c.Body) {
		return fmt.Errorf("the answer does not contain %q", c.Body)
	}
	if c.JSONField != "" {
		if err := jsonField(body, c.JSONField, c.JSONEquals); err != nil {
			return err
		}
	}
	if res.TLS != nil && len(res.TLS.PeerCertificates) > 0 {
		if err := daysLeft(res.TLS.PeerCertificates[0], c.MinDaysLeft, c.now()); err != nil {
			return err
		}
	}
	if c.MaxLatency > 0 && took > c.MaxLatency {
		return &Warning{Msg: fmt.Sprintf("slow: answered in %s (max_latency %s)", took.Round(time.Millisecond), c.MaxLatency)}
	}
	return nil
}

// init builds the check's transport: a new connection per check (a kept-alive
// one would hide a backend that stopped accepting connections).
func (c *HTTPCheck) init() {
	c.tr = &http.Transport{DisableKeepAlives: true, DisableCompression: true}
	if c.Dial != nil {
		c.tr.DialContext = c.Dial
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLS != nil {
		tlsConf = c.TLS.Clone()
	}
	c.tr.TLSClientConfig = tlsConf
}

func (c *HTTPCheck) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// jsonField checks that the value at the dotted path of a JSON document,
// written as text, equals want.
func jsonField(body []byte, path, want string) error {
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("the answer is not JSON: %v", err)
	}
	for key := range strings.SplitSeq(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[key]; !ok {
				return fmt.Errorf("JSON field %s is missing", path)
			}
		case []any:
			i, err := strconv.Atoi(key)
			if err != nil || i < 0 || i >= len(x) {
				return fmt.Errorf("JSON field %s is missing", path)
			}
			v = x[i]
		default:
			return fmt.Errorf("JSON field %s is missing", path)
		}
	}
	var got string
	switch x := v.(type) {
	case string:
		got = x
	case nil:
		got = "null"
	default:
		b, _ := json.Marshal(x)
		got = string(b)
	}
	if got != want {
		return fmt.Errorf("JSON field %s is %q (want %q)", path, got, want)
	}
	return nil
}

func daysLeft(cert *x509.Certificate, minDays int, now time.Time) error {
	left := cert.NotAfter.Sub(now)
	if left <= 0 {
		return fmt.Errorf("certificate expired on %s", cert.NotAfter.UTC().Format(time.DateOnly))
	}
	// A short-lived certificate (an internal CA's week, a 6-day ACME
	// profile) is only late when less than a third of its life is left.
	limit := min(time.Duration(minDays)*24*time.Hour, cert.NotAfter.Sub(cert.NotBefore)/3)
	if minDays > 0 && left < limit {
		return &Warning{Msg: fmt.Sprintf("certificate expires in %d days (%s; min_days_left %d)", int(left.Hours()/24), cert.NotAfter.UTC().Format(time.DateOnly), minDays)}
	}
	return nil
}

// TCPCheck connects to Addr.
type TCPCheck struct {
	Addr       string
	Dial       DialFunc
	MaxLatency time.Duration
}

// Check implements Checker.
func (c *TCPCheck) Check(ctx context.Context) error {
	dial := c.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	start := time.Now()
	conn, err := dial(ctx, "tcp", c.Addr)
	if err != nil {
		return simplify(err)
	}
	conn.Close()
	if took := time.Since(start); c.MaxLatency > 0 && took > c.MaxLatency {
		return &Warning{Msg: fmt.Sprintf("slow: connected in %s (max_latency %s)", took.Round(time.Millisecond), c.MaxLatency)}
	}
	return nil
}

// TLSCheck connects to Addr, completes a handshake for ServerName and
// checks the certificate: the name it covers and the days it has left. It
// does not verify the chain (a lab's internal CA is not in the system's
// roots); the gateway's clients do.
type TLSCheck struct {
	Addr        string
	ServerName  string
	Dial        DialFunc
	MinDaysLeft int
	MaxLatency  time.Duration
	Now         func() time.Time
}

// Check implements Checker.
func (c *TLSCheck) Check(ctx context.Context) error {
	dial := c.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	start := time.Now()
	raw, err := dial(ctx, "tcp", c.Addr)
	if err != nil {
		return simplify(err)
	}
	defer raw.Close()
	conn := tls.Client(raw, &tls.Config{ServerName: c.ServerName, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) //nolint:gosec // names and dates are checked below
	if err := conn.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", simplify(err))
	}
	certs := conn.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return errors.New("no certificate")
	}
	if c.ServerName != "" {
		if err := certs[0].VerifyHostname(c.ServerName); err != nil {
			return fmt.Errorf("the certificate is not for %s", c.ServerName)
		}
	}
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	if err := daysLeft(certs[0], c.MinDaysLeft, now); err != nil {
		return err
	}
	if took := time.Since(start); c.MaxLatency > 0 && took > c.MaxLatency {
		return &Warning{Msg: fmt.Sprintf("slow: handshake took %s (max_latency %s)", took.Round(time.Millisecond), c.MaxLatency)}
	}
	return nil
}

// DNSCheck resolves Host and expects every address of Expect among the
// answers (any answer when Expect is empty).
type DNSCheck struct {
	Host     string
	Expect   []netip.Addr
	Resolver *net.Resolver // nil: the system's
}

// Check implements Checker.
func (c *DNSCheck) Check(ctx context.Context) error {
	r := c.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupNetIP(ctx, "ip", c.Host)
	if err != nil {
		return simplify(err)
	}
	if len(addrs) == 0 {
		return fmt.Errorf("%s has no address", c.Host)
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	for _, e := range c.Expect {
		if !slices.Contains(addrs, e.Unmap()) {
			return fmt.Errorf("%s resolves to %v, not %s", c.Host, addrs, e)
		}
	}
	return nil
}

// simplify keeps the part of a network error a person reads ("connection
// refused") and drops the addresses Go repeats around it.
func simplify(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		inner := oe.Err.Error()
		if strings.Contains(inner, "connection refused") {
			return errors.New("connection refused")
		}
		if oe.Timeout() {
			return errors.New("timed out")
		}
		return fmt.Errorf("%s: %s", oe.Op, inner)
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		if de.IsNotFound {
			return fmt.Errorf("%s: no such host", de.Name)
		}
		return fmt.Errorf("resolving %s: %s", de.Name, de.Err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.New("timed out")
	}
	return err
}
