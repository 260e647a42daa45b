package status

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// private is what the public page, API, badges and charts never show of
// lab(): the private service, backends, causes, DNS details, the config
// revision, the relay's address and its measurement errors.
var private = []string{"vaultwarden", "192.168.1", "connection refused", "the provider refused the token", "3f2a9c1", "100.90.0.1", "timeout"}

func TestPublicShowsNothingPrivate(t *testing.T) {
	h := newServer(t, true)
	for _, target := range []string{
		"/", "/api/status", "/api/services/blog", "/api/services/mail", "/api/services/vaultwarden",
		"/badge/blog/state.svg", "/badge/blog/uptime.svg", "/badge/vaultwarden/state.svg", "/badge/vaultwarden/uptime.svg",
		"/chart/blog/latency.svg", "/chart/blog/uptime.svg", "/chart/vaultwarden/latency.svg", "/chart/vaultwarden/uptime.svg",
		"/chart/vaultwarden/latency.svg?days=30",
	} {
		res := get(t, h, target)
		b := body(t, res)
		if strings.Contains(target, "vaultwarden") {
			// Answered exactly as a name that does not exist, which the
			// request itself names.
			other := get(t, h, strings.ReplaceAll(target, "vaultwarden", "nosuchname"))
			ob := strings.ReplaceAll(body(t, other), "nosuchname", "vaultwarden")
			if res.StatusCode != other.StatusCode || !strings.HasPrefix(b, "<svg") && b != ob {
				t.Errorf("public %s tells a private service from a missing one: %d %s", target, res.StatusCode, b)
			}
			b = strings.ReplaceAll(b, "vaultwarden", "")
		}
		for _, p := range private {
			if strings.Contains(b, p) {
				t.Errorf("public %s shows %q:\n%s", target, p, b)
			}
		}
	}
}

// TestImageErrorsShowNoSourceURL: a failing source's URL (an internal
// address, a token in its query) stays in the log.
func TestImageErrorsShowNoSourceURL(t *testing.T) {
	src := &source{}
	src.set("fail", nil)
	im, _, _ := newImages(t, src)
	im.opts.Wait = 10 * time.Second
	for _, e := range im.entries {
		e.src.URL += "&auth=graf-SECRET"
		e.src.Public = true
	}
	mux := http.NewServeMux()
	mux.Handle("GET /img/{name}", im.PublicHandler())
	for _, h := range []http.Handler{mux, im} {
		req, _ := http.NewRequest("GET", "/img/cpu", nil)
		req.SetPathValue("name", "cpu")
		w := &recorder{header: http.Header{}}
		h.ServeHTTP(w, req)
		if w.code != http.StatusBadGateway {
			t.Fatalf("status %d, want 502", w.code)
		}
		if b := w.body.String(); strings.Contains(b, "graf-SECRET") || strings.Contains(b, "127.0.0.1") || strings.Contains(b, "/render/") {
			t.Errorf("the error names the source: %s", b)
		}
	}
}

type recorder struct {
	header http.Header
	code   int
	body   strings.Builder
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = 200
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(c int) { r.code = c }

var _ io.Writer = (*recorder)(nil)
