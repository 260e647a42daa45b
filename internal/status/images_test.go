package status

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func pngOf(c color.Color) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 4, 4))
	for x := range 4 {
		for y := range 4 {
			img.Set(x, y, c)
		}
	}
	var b bytes.Buffer
	_ = png.Encode(&b, img)
	return b.Bytes()
}

// source is a local image source whose answer the test changes.
type source struct {
	mu       sync.Mutex
	mode     string // png, fail, html, svg, big
	body     []byte
	delay    chan struct{} // if set, each request waits for it to close
	requests atomic.Int32
}

func (s *source) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	mode, body, delay := s.mode, s.body, s.delay
	s.mu.Unlock()
	if delay != nil {
		<-delay
	}
	switch mode {
	case "fail":
		http.Error(w, "grafana is down", http.StatusServiceUnavailable)
	case "html": // a login page with 200 and an image type, as some proxies do
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write([]byte("<!DOCTYPE html><html><body>Please log in</body></html>"))
	case "svg":
		w.Header().Set("Content-Type", "image/svg+xml")
		_, _ = w.Write([]byte(`<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>`))
	case "big":
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(append(pngOf(color.White), make([]byte, 2<<20)...))
	default:
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(body)
	}
}

func (s *source) set(mode string, body []byte) {
	s.mu.Lock()
	s.mode, s.body = mode, body
	s.mu.Unlock()
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newImages(t *testing.T, src *source) (*Images, http.Handler, *clock) {
	t.Helper()
	srv := httptest.NewServer(src)
	t.Cleanup(srv.Close)
	clk := &clock{t: now}
	im := NewImages(ImagesOptions{
		Sources:  []ImageSource{{Name: "cpu", URL: srv.URL + "/render/d-solo/x?panelId=2", Interval: time.Minute}},
		MaxBytes: 1 << 20,
		Now:      clk.now,
	})
	t.Cleanup(im.Close)
	mux := http.NewServeMux()
	mux.Handle("GET /img/{name}", im)
	return im, mux, clk
}

// waitIdle waits until no fetch of name runs (the refresh in the background).
func waitIdle(t *testing.T, im *Images, name string) {
	t.Helper()
	e := im.entries[name]
	for range 1000 {
		e.mu.Lock()
		ch := e.inflight
		e.mu.Unlock()
		if ch == nil {
			return
		}
		<-ch
	}
}

func TestImagesCoalesceAndServeLastGood(t *testing.T) {
	red, blue := pngOf(color.RGBA{255, 0, 0, 255}), pngOf(color.RGBA{0, 0, 255, 255})
	src := &source{mode: "png", body: red, delay: make(chan struct{})}
	im, h, clk := newImages(t, src)

	// 20 requests for an image never fetched, while the source is slow: one
	// fetch, and every request gets its result.
	var wg sync.WaitGroup
	results := make([]*http.Response, 20)
	for i := range results {
		wg.Go(func() { results[i] = get(t, h, "/img/cpu") })
	}
	for im.Fetches("cpu") == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let the other requests arrive and join
	close(src.delay)
	wg.Wait()
	if n := src.requests.Load(); n != 1 {
		t.Errorf("%d source requests for 20 concurrent requests, want 1", n)
	}
	for i, res := range results {
		if b := body(t, res); res.StatusCode != 200 || b != string(red) || res.Header.Get("Content-Type") != "image/png" {
			t.Fatalf("request %d: %d %s", i, res.StatusCode, res.Header.Get("Content-Type"))
		}
	}
	etag := results[0].Header.Get("ETag")
	if res := get(t, h, "/img/cpu", "If-None-Match", etag); res.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", res.StatusCode)
	}
	if cc := results[0].Header.Get("Cache-Control"); cc != "public, max-age=60" {
		t.Errorf("Cache-Control %q", cc)
	}

	// Fresh: no new fetch.
	clk.add(30 * time.Second)
	get(t, h, "/img/cpu")
	if n := src.requests.Load(); n != 1 {
		t.Errorf("a fresh image was fetched again (%d source requests)", n)
	}

	// Stale, and the source is slow: the old image is served at once, one refresh runs.
	src.mu.Lock()
	src.delay = make(chan struct{})
	src.mu.Unlock()
	src.set("png", blue)
	clk.add(time.Minute)
	for range 10 {
		if b := body(t, get(t, h, "/img/cpu")); b != string(red) {
			t.Fatalf("while refreshing, not the last good image")
		}
	}
	close(src.delay)
	waitIdle(t, im, "cpu")
	if n := src.requests.Load(); n != 2 {
		t.Errorf("%d source requests after 10 requests for a stale image, want 2", n)
	}
	if b := body(t, get(t, h, "/img/cpu")); b != string(blue) {
		t.Errorf("after the refresh, not the new image")
	}
	src.mu.Lock()
	src.delay = nil
	src.mu.Unlock()

	// The source fails, then answers an HTML page, then a too large image:
	// the last good image stays, marked stale.
	for _, mode := range []string{"fail", "html", "big"} {
		src.set(mode, nil)
		clk.add(2 * time.Minute)
		get(t, h, "/img/cpu") // starts the refresh
		waitIdle(t, im, "cpu")
		res := get(t, h, "/img/cpu")
		if b := body(t, res); res.StatusCode != 200 || b != string(blue) || res.Header.Get("X-Labgate-Image-Stale") == "" {
			t.Errorf("source %s: %d stale=%q, want the last good image marked stale", mode, res.StatusCode, res.Header.Get("X-Labgate-Image-Stale"))
		}
	}
	// After a failure it waits a while before trying again.
	before := src.requests.Load()
	get(t, h, "/img/cpu")
	if n := src.requests.Load(); n != before {
		t.Errorf("a failed source was asked again at once")
	}
	// An SVG is an image too.
	src.set("svg", nil)
	clk.add(2 * time.Minute)
	get(t, h, "/img/cpu")
	waitIdle(t, im, "cpu")
	if res := get(t, h, "/img/cpu"); res.Header.Get("Content-Type") != "image/svg+xml" || res.Header.Get("X-Labgate-Image-Stale") != "" {
		t.Errorf("an SVG source: %s", res.Header.Get("Content-Type"))
	}
}

func TestImagesNeverAnImage(t *testing.T) {
	src := &source{mode: "html"}
	_, h, _ := newImages(t, src)
	res := get(t, h, "/img/cpu")
	if b := body(t, res); res.StatusCode != http.StatusBadGateway || !bytes.Contains([]byte(b), []byte("HTML page")) {
		t.Errorf("an HTML page as the first answer: %d %q, want 502 saying why", res.StatusCode, b)
	}
	if res := get(t, h, "/img/nope"); res.StatusCode != 404 {
		t.Errorf("an unknown image: %d", res.StatusCode)
	}
}

func TestImageType(t *testing.T) {
	for _, tt := range []struct {
		declared string
		body     []byte
		ok       bool
	}{
		{"image/png", pngOf(color.Black), true},
		{"image/png; charset=binary", pngOf(color.Black), true},
		{"text/html", []byte("<html>"), false},
		{"image/png", []byte("<!doctype html><p>error"), false},
		{"image/png", []byte("plain text"), false},
		{"image/svg+xml", []byte(`<svg xmlns="http://www.w3.org/2000/svg"/>`), true},
		{"image/svg+xml", []byte(`<html><svg/></html>`), false},
		{"", pngOf(color.Black), false},
		{"image/png", nil, false},
	} {
		_, err := imageType(tt.declared, tt.body)
		if (err == nil) != tt.ok {
			t.Errorf("imageType(%q, %.20q) = %v, want ok=%v", tt.declared, tt.body, err, tt.ok)
		}
	}
}

// TestImageBearerToken fetches from a source that wants a token (a Grafana
// with a service account), and checks that a redirect to another host does
// not carry the token along.
func TestImageBearerToken(t *testing.T) {
	var elsewhere atomic.Value // the Authorization the other host got
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Store(r.Header.Get("Authorization") + "|")
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(pngOf(color.Black))
	}))
	t.Cleanup(other.Close)
	grafana := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer glsa_viewer" {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		if r.URL.Path == "/moved" {
			// Another host by name: 127.0.0.1 and localhost.
			http.Redirect(w, r, strings.Replace(other.URL, "127.0.0.1", "localhost", 1)+"/x.png", http.StatusFound)
			return
		}
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(pngOf(color.White))
	}))
	t.Cleanup(grafana.Close)

	im := NewImages(ImagesOptions{
		Sources: []ImageSource{
			{Name: "cpu", URL: grafana.URL + "/render/d-solo/x", BearerToken: "glsa_viewer", Interval: time.Minute},
			{Name: "anon", URL: grafana.URL + "/render/d-solo/x", Interval: time.Minute},
			{Name: "moved", URL: grafana.URL + "/moved", BearerToken: "glsa_viewer", Interval: time.Minute},
		},
		MaxBytes: 1 << 20,
	})
	t.Cleanup(im.Close)
	mux := http.NewServeMux()
	mux.Handle("GET /img/{name}", im)
	get := func(name string) int {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", "/img/"+name, nil))
		return rec.Code
	}
	if code := get("cpu"); code != http.StatusOK {
		t.Errorf("with the token: %d, want 200", code)
	}
	if code := get("anon"); code != http.StatusBadGateway {
		t.Errorf("without the token: %d, want 502 (the source answered 401)", code)
	}
	if code := get("moved"); code != http.StatusOK {
		t.Errorf("redirected: %d, want 200", code)
	}
	if got, _ := elsewhere.Load().(string); got != "|" {
		t.Errorf("the host a redirect led to got Authorization %q, want none", strings.TrimSuffix(got, "|"))
	}
}

// The log of a failed fetch says what is served instead: the last good
// image, or nothing yet (the 502 the docs describe).
func TestImageFailureLog(t *testing.T) {
	var logs bytes.Buffer
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
	}))
	t.Cleanup(down.Close)
	im := NewImages(ImagesOptions{
		Sources:  []ImageSource{{Name: "cpu", URL: down.URL + "/render", Interval: time.Minute}},
		MaxBytes: 1 << 20,
		Log:      slog.New(slog.NewTextHandler(&logs, nil)),
	})
	t.Cleanup(im.Close)
	mux := http.NewServeMux()
	mux.Handle("GET /img/{name}", im)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/img/cpu", nil))
	if rec.Code != http.StatusBadGateway {
		t.Fatalf("%d, want 502", rec.Code)
	}
	waitIdle(t, im, "cpu")
	if got := logs.String(); strings.Contains(got, "last good") || !strings.Contains(got, "no image to serve yet") {
		t.Errorf("log:\n%s", got)
	}
}
