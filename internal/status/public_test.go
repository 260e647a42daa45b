package status

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// private is what the public page, API, badges and charts never show of
// lab(): the private service, backends, causes, DNS details, the config
// revision, the relay's address and its measurement errors.
var private = []string{"vaultwarden", "192.168.1", "connection refused", "the provider refused the token", "3f2a9c1", "100.90.0.1", "timeout",
	"history.db", "not reconciled", "Needs your attention", `id="problems"`}

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

// TestNoMarkupInjection: names, hosts, causes, DNS details, backends, relay
// errors and the title are text wherever they appear: the page, the API,
// the badges and the charts.
func TestNoMarkupInjection(t *testing.T) {
	const evil = `"><script>alert(1)</script><svg onload=alert(2)>`
	src := SourceFunc(func() Snapshot {
		return Snapshot{Revision: evil, Generation: 1,
			Services: []Service{{Name: "blog", Class: "public", Hosts: []string{evil}, State: "down", Cause: evil,
				Backends: []Backend{{URL: evil}}, DNS: "failing", DNSDetail: evil}},
			Relay: &Relay{Address: evil, State: "down", Cause: evil, Samples: []RelaySample{{Time: now, Err: evil}}},
		}
	})
	for _, public := range []bool{false, true} {
		h := New(Options{Source: src, History: store(t), Public: public, Title: evil, Now: func() time.Time { return now }})
		for _, target := range []string{"/", "/badge/blog/state.svg", "/badge/blog/state.svg?label=" + evil, "/badge/blog/uptime.svg?label=" + evil, "/chart/blog/latency.svg", "/chart/blog/uptime.svg"} {
			req := httptestRequest(target)
			w := &recorder{header: http.Header{}}
			h.ServeHTTP(w, req)
			b := w.body.String()
			if strings.Contains(b, "<script") || strings.Contains(b, "<svg onload") {
				t.Errorf("public=%v %s: markup from the data:\n%s", public, target, b)
			}
			if (target == "/" || strings.Contains(target, "label")) && !strings.Contains(b, "&lt;script&gt;") && !strings.Contains(b, `\u003cscript`) {
				t.Errorf("public=%v %s: the text is not shown escaped:\n%s", public, target, b)
			}
		}
	}
}

func httptestRequest(target string) *http.Request {
	path, query, _ := strings.Cut(target, "?")
	u := path
	if query != "" {
		name, value, _ := strings.Cut(query, "=")
		u += "?" + name + "=" + url.QueryEscape(value)
	}
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		panic(err)
	}
	return req
}

// TestPublicRendersAtMostEveryTTL: the public may ask for the page as often
// as it likes; it is rendered once per publicTTL, not once per request.
func TestPublicRendersAtMostEveryTTL(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	src := SourceFunc(func() Snapshot {
		mu.Lock()
		calls++
		mu.Unlock()
		return lab()
	})
	clk := now
	h := New(Options{Source: src, History: store(t), Public: true, Now: func() time.Time { return clk }})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for _, target := range []string{"/", "/api/status"} {
				req, _ := http.NewRequest("GET", target, nil)
				req.Header.Set("Accept-Encoding", "gzip")
				w := &recorder{header: http.Header{}}
				h.ServeHTTP(w, req)
				if w.code != 200 || target == "/" && w.header.Get("Content-Encoding") != "gzip" {
					t.Errorf("%s: %d, encoding %q", target, w.code, w.header.Get("Content-Encoding"))
				}
			}
		})
	}
	wg.Wait()
	if calls != 2 {
		t.Errorf("40 public requests took %d renderings, want 2 (the page and the API)", calls)
	}
	clk = clk.Add(publicTTL)
	if res := get(t, h, "/"); res.StatusCode != 200 || !strings.Contains(body(t, res), `data-name="blog"`) {
		t.Errorf("the page after the TTL: %d", res.StatusCode)
	}
	if calls != 3 {
		t.Errorf("after %v the page was not rendered again (%d renderings)", publicTTL, calls)
	}
	// The admin page is rendered for each request: it is the operator's.
	admin := New(Options{Source: src, History: store(t), Now: func() time.Time { return clk }})
	get(t, admin, "/")
	get(t, admin, "/")
	if calls != 5 {
		t.Errorf("the admin page was not rendered for each request (%d renderings)", calls)
	}
}
