package status

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ImageSource is an image the file names for /img/{name}: a Grafana panel
// render URL, a chart of another tool.
type ImageSource struct {
	Name        string
	URL         string
	BearerToken string        // sent as Authorization: Bearer, to URL's host and its subdomains only (redirects)
	Interval    time.Duration // how long a fetched image is fresh
	Public      bool          // also served by PublicHandler
}

// ImagesOptions configure Images.
type ImagesOptions struct {
	Sources []ImageSource
	Client  *http.Client // default: a client with a 30 s timeout
	// MaxBytes is the largest image kept; larger responses are refused.
	// Memory is bounded by len(Sources) x MaxBytes. Default 4 MiB.
	MaxBytes int64
	// Wait is how long a request waits for the first fetch of an image
	// that was never fetched; default 20 s.
	Wait time.Duration
	Now  func() time.Time
	Log  *slog.Logger
}

// Images is a cache of the images the file names. An image is fetched on
// its first request and again on a request after its interval; however many
// requests come, one fetch per image runs at a time (coalesced), and while it
// runs, or when the source fails, the last good image is served. A response
// that is not an image (an HTML login or error page with status 200) is
// refused and the last good image stays.
type Images struct {
	opts    ImagesOptions
	entries map[string]*imageEntry
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

type imageEntry struct {
	src ImageSource

	mu       sync.Mutex
	img      *cachedImage  // last good; nil before the first success
	fetched  time.Time     // when img was fetched
	tried    time.Time     // when the last fetch ended
	lastErr  error         // of the last fetch; nil when it succeeded
	inflight chan struct{} // closed when the running fetch ends; nil when none runs
	fetches  int           // fetches started, for tests and logs
}

type cachedImage struct {
	body  []byte
	ctype string
	etag  string
}

// NewImages returns the cache for sources. Close stops fetches in flight.
func NewImages(opts ImagesOptions) *Images {
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 4 << 20
	}
	if opts.Wait <= 0 {
		opts.Wait = 20 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	im := &Images{opts: opts, entries: map[string]*imageEntry{}}
	im.ctx, im.cancel = context.WithCancel(context.Background())
	for _, s := range opts.Sources {
		if s.Interval <= 0 {
			s.Interval = 5 * time.Minute
		}
		im.entries[s.Name] = &imageEntry{src: s}
	}
	return im
}

// Close cancels fetches in flight and waits for them.
func (im *Images) Close() {
	im.cancel()
	im.wg.Wait()
}

// Fetches returns how many fetches of the image name have started.
func (im *Images) Fetches(name string) int {
	e := im.entries[name]
	if e == nil {
		return 0
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.fetches
}

// refreshLocked starts a fetch unless one runs; e.mu is held. It returns the
// channel closed when the fetch ends.
func (im *Images) refreshLocked(e *imageEntry) chan struct{} {
	if e.inflight != nil {
		return e.inflight
	}
	done := make(chan struct{})
	e.inflight = done
	e.fetches++
	im.wg.Add(1)
	go func() {
		defer im.wg.Done()
		img, err := im.fetch(e.src)
		e.mu.Lock()
		now := im.opts.Now()
		e.tried, e.lastErr = now, err
		if err == nil {
			e.img, e.fetched = img, now
		} else {
			msg := "fetching an image failed, serving the last good one"
			if e.img == nil {
				msg = "fetching an image failed: no image to serve yet, requests get 502"
			}
			im.opts.Log.Warn(msg, "image", e.src.Name, "error", err)
		}
		e.inflight = nil
		e.mu.Unlock()
		close(done)
	}()
	return done
}

// fetch gets the image and checks that it is one.
func (im *Images) fetch(src ImageSource) (*cachedImage, error) {
	req, err := http.NewRequestWithContext(im.ctx, http.MethodGet, src.URL, nil)
	if err != nil {
		return nil, errors.New("the image's URL is not valid")
	}
	req.Header.Set("Accept", "image/png,image/svg+xml,image/*;q=0.8")
	req.Header.Set("User-Agent", "labgate-image-cache")
	if src.BearerToken != "" {
		req.Header.Set("Authorization", "Bearer "+src.BearerToken)
	}
	res, err := im.opts.Client.Do(req)
	if err != nil {
		// The reason without the URL, which may hold a token: the log
		// names the image.
		var ue *url.Error
		if errors.As(err, &ue) {
			return nil, ue.Err
		}
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the source answered %s", res.Status)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, im.opts.MaxBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > im.opts.MaxBytes {
		return nil, fmt.Errorf("image larger than %d bytes", im.opts.MaxBytes)
	}
	ctype, err := imageType(res.Header.Get("Content-Type"), body)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	return &cachedImage{body: body, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}, nil
}

// imageType returns the content type of an image response, or an error
// when it is not an image: a declared type other than image/*, or a body
// that is HTML whatever its declared type (login and error pages).
func imageType(declared string, body []byte) (string, error) {
	mt, _, err := mime.ParseMediaType(declared)
	if err != nil || !strings.HasPrefix(mt, "image/") {
		return "", fmt.Errorf("not an image: Content-Type %q", declared)
	}
	if len(body) == 0 {
		return "", errors.New("not an image: empty body")
	}
	sniffed := http.DetectContentType(body)
	if strings.HasPrefix(sniffed, "text/html") {
		return "", errors.New("not an image: the body is an HTML page")
	}
	if mt == "image/svg+xml" {
		if !bytes.Contains(body[:min(len(body), 4096)], []byte("<svg")) {
			return "", errors.New("not an image: image/svg+xml without <svg")
		}
		return mt, nil
	}
	if !strings.HasPrefix(sniffed, "image/") {
		return "", fmt.Errorf("not an image: the body looks like %s", sniffed)
	}
	return sniffed, nil
}

// PublicHandler serves GET /img/{name} for the images marked Public only.
func (im *Images) PublicHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e := im.entries[r.PathValue("name")]; e == nil || !e.src.Public {
			http.Error(w, fmt.Sprintf("no public image named %q", r.PathValue("name")), http.StatusNotFound)
			return
		}
		im.serve(w, r, true)
	})
}

// ServeHTTP serves GET /img/{name}.
func (im *Images) ServeHTTP(w http.ResponseWriter, r *http.Request) { im.serve(w, r, false) }

// serve serves an image; for the public, a failure says nothing of why (the
// reason may name an internal address).
func (im *Images) serve(w http.ResponseWriter, r *http.Request, public bool) {
	name := r.PathValue("name")
	e := im.entries[name]
	if e == nil {
		http.Error(w, fmt.Sprintf("no image named %q in status.images", name), http.StatusNotFound)
		return
	}
	now := im.opts.Now()
	e.mu.Lock()
	img := e.img
	if img == nil || now.Sub(e.fetched) >= e.src.Interval {
		// Stale or missing: one fetch for everyone. After a failure, wait a
		// tenth of the interval (at least 10 s) before trying again.
		if e.lastErr == nil || now.Sub(e.tried) >= max(e.src.Interval/10, 10*time.Second) || img == nil && e.inflight != nil {
			done := im.refreshLocked(e)
			if img == nil {
				e.mu.Unlock()
				select {
				case <-done:
				case <-time.After(im.opts.Wait):
				case <-r.Context().Done():
					return
				}
				e.mu.Lock()
				img = e.img
			}
		}
	}
	fetched, lastErr := e.fetched, e.lastErr
	e.mu.Unlock()
	if img == nil {
		msg := "the image has not been fetched yet"
		switch {
		case lastErr != nil && public:
			msg = "the image source failed"
		case lastErr != nil:
			msg = "the image source failed: " + lastErr.Error()
		}
		http.Error(w, msg, http.StatusBadGateway)
		return
	}
	h := w.Header()
	h.Set("Content-Type", img.ctype)
	h.Set("ETag", img.etag)
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(e.src.Interval.Seconds())))
	h.Set("Last-Modified", fetched.UTC().Format(http.TimeFormat))
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	if lastErr != nil {
		h.Set("X-Labgate-Image-Stale", "the source failed; this is the last good image")
	}
	if etagMatch(r.Header.Get("If-None-Match"), img.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(img.body)))
	_, _ = w.Write(img.body)
}
