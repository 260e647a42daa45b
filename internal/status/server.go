package status

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labgate/labgate/internal/history"
)

//go:embed page.html style.css
var assets embed.FS

// Options configure a Server.
type Options struct {
	Source  Source
	History History // nil: no uptime bars or charts, only the present
	// Images are served from /img/{name}; nil: none.
	Images *Images
	// Public makes the read-only page for the public: only public services,
	// no backends, causes, DNS details or config revision.
	Public bool
	// Title heads the page; default "labgate status".
	Title string
	Now   func() time.Time // default time.Now
	Log   *slog.Logger
}

// Server serves the status page, its JSON API, badges, charts and images.
type Server struct {
	opts Options
	page *template.Template
	css  template.CSS
	mux  *http.ServeMux

	cacheMu sync.Mutex // held while rendering: one rendering for everyone
	cache   map[string]*rendered
}

// Days of uptime shown on the page and in the API.
const barDays = 90

// New returns a Server.
func New(opts Options) *Server {
	if opts.Title == "" {
		opts.Title = "labgate status"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	css, _ := assets.ReadFile("style.css")
	s := &Server{
		opts:  opts,
		cache: map[string]*rendered{},
		css:   template.CSS(css),
		page: template.Must(template.New("page.html").Funcs(template.FuncMap{
			"color": colorOf,
		}).ParseFS(assets, "page.html")),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.servePage)
	mux.HandleFunc("GET /api/status", s.serveStatus)
	mux.HandleFunc("GET /api/services/{name}", s.serveService)
	mux.HandleFunc("GET /badge/{service}/state.svg", s.serveStateBadge)
	mux.HandleFunc("GET /badge/{service}/uptime.svg", s.serveUptimeBadge)
	mux.HandleFunc("GET /chart/{service}/latency.svg", s.serveLatencyChart)
	mux.HandleFunc("GET /chart/{service}/uptime.svg", s.serveUptimeChart)
	if opts.Images != nil && opts.Public {
		mux.Handle("GET /img/{name}", opts.Images.PublicHandler())
	} else if opts.Images != nil {
		mux.Handle("GET /img/{name}", opts.Images)
	}
	s.mux = mux
	return s
}

// ServeHTTP serves the routes:
//
//	GET /                                  the status page
//	GET /api/status                        every service now, as JSON
//	GET /api/services/{name}               one service with 90 days and 24 hours of history
//	GET /badge/{service}/state.svg         a badge of the state
//	GET /badge/{service}/uptime.svg?days=N the uptime over N days (default 30, at most 400)
//	GET /chart/{service}/latency.svg?hours=N or ?days=N  a latency chart (default 24 hours)
//	GET /chart/{service}/uptime.svg?days=N the daily uptime bars (default 90)
//	GET /img/{name}                        a cached image from the file's status.images
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	s.mux.ServeHTTP(w, r)
}

// snapshot returns the Source's snapshot as this server may show it.
func (s *Server) snapshot() Snapshot {
	snap := s.opts.Source.Snapshot()
	if !s.opts.Public {
		return snap
	}
	pub := Snapshot{Generation: snap.Generation}
	for _, svc := range snap.Services {
		if svc.Class != "public" {
			continue
		}
		svc.Backends, svc.Cause, svc.DNSDetail = nil, "", ""
		pub.Services = append(pub.Services, svc)
	}
	if snap.Relay != nil {
		rel := *snap.Relay
		rel.Address, rel.Cause = "", ""
		// A failed measurement's error names addresses: the public learns
		// only that it failed.
		rel.Samples = make([]RelaySample, len(snap.Relay.Samples))
		for i, smp := range snap.Relay.Samples {
			if smp.Err != "" {
				smp.Err = "failed"
			}
			rel.Samples[i] = smp
		}
		pub.Relay = &rel
	}
	return pub
}

func (s *Server) find(name string) (Service, bool) {
	for _, svc := range s.snapshot().Services {
		if svc.Name == name {
			return svc, true
		}
	}
	return Service{}, false
}

// serviceView is a service as the page shows it.
type serviceView struct {
	Service
	Bars       template.HTML
	Chart      template.HTML
	Uptime90   string
	Uptime30   string
	LastCheck  string
	LatencyStr string
	Cert       string
	CertLevel  string // ok, soon (under 14 days), expired
}

type relayView struct {
	*Relay
	LastRTT, LastDown, LastUp string
	Ago                       string
	Chart                     template.HTML
}

type pageData struct {
	Title      string
	CSS        template.CSS
	Now        string
	Overall    string
	Counts     []stateCount
	Public     bool
	Revision   string
	Generation int
	Services   []serviceView
	Relay      *relayView
	Problems   []problemView
}

// problemView is an open problem as the admin page shows it.
type problemView struct {
	Problem
	Since   string // "since 2026-11-26 02:50 UTC (3 h ago)"
	Changed string // "" unless the detail changed since
	Lines   []string
}

type stateCount struct {
	State string
	N     int
}

func (s *Server) servePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	s.serveRendered(w, r, "page", "text/html; charset=utf-8", s.renderPage)
}

// renderPage renders the status page.
func (s *Server) renderPage() ([]byte, error) {
	now := s.opts.Now()
	snap := s.snapshot()
	d := pageData{Title: s.opts.Title, CSS: s.css, Now: now.UTC().Format("2006-01-02 15:04:05 UTC"),
		Public: s.opts.Public, Revision: snap.Revision, Generation: snap.Generation}
	counts := map[string]int{}
	for _, svc := range snap.Services {
		counts[svc.State]++
		d.Services = append(d.Services, s.view(svc, now))
	}
	for _, st := range []string{"down", "degraded", "unknown", "up"} {
		if counts[st] > 0 {
			d.Counts = append(d.Counts, stateCount{st, counts[st]})
		}
	}
	switch {
	case counts["down"] > 0:
		d.Overall = "down"
	case counts["degraded"] > 0:
		d.Overall = "degraded"
	case counts["up"] > 0:
		d.Overall = "up"
	default:
		d.Overall = "unknown"
	}
	for _, p := range snap.Problems {
		d.Problems = append(d.Problems, problemRow(p, now))
	}
	for i := range d.Services {
		d.Services[i].DNSDetail = referTo(d.Services[i].DNSDetail, snap.Problems)
	}
	if rel := snap.Relay; rel != nil {
		rv := &relayView{Relay: rel}
		if last, ok := rel.Last(); ok {
			rv.LastRTT = seconds(last.RTT)
			rv.LastDown, rv.LastUp = bytesPerSecond(last.Down), bytesPerSecond(last.Up)
			rv.Ago = ago(now, last.Time)
		}
		rv.Chart = template.HTML(relayChart(rel, now))
		d.Relay = rv
	}
	var buf bytes.Buffer
	if err := s.page.Execute(&buf, d); err != nil {
		s.opts.Log.Error("rendering the status page", "error", err)
		return nil, err
	}
	return buf.Bytes(), nil
}

// problemRow is p as the page shows it: when it began and, if it changed
// since, when it last did; its detail line by line.
// referTo shortens a service's detail that repeats the first line of a
// problem shown above the services (a zone-wide DNS failure is in every
// card otherwise) to a reference to that problem.
func referTo(detail string, problems []Problem) string {
	for _, p := range problems {
		first, _, _ := strings.Cut(strings.TrimSpace(p.Detail), "\n")
		if first == "" || !strings.HasSuffix(detail, first) {
			continue
		}
		ref := "see “" + p.Title + "” above"
		if prefix := strings.TrimSpace(strings.TrimSuffix(detail, first)); prefix != "" {
			return prefix + " " + ref // "in place, but the last reconciliation failed: see …"
		}
		return ref
	}
	return detail
}

func problemRow(p Problem, now time.Time) problemView {
	v := problemView{Problem: p, Since: p.Since.UTC().Format("2006-01-02 15:04 UTC") + " (" + ago(now, p.Since) + ")"}
	if p.Changed.After(p.Since) {
		v.Changed = ago(now, p.Changed)
	}
	for _, l := range strings.Split(strings.TrimSpace(p.Detail), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			v.Lines = append(v.Lines, l)
		}
	}
	return v
}

// publicTTL is how long the public page and API reuse one rendering: the
// page of 100 services takes tens of milliseconds to render, and the public
// may ask for it as often as it likes.
const publicTTL = 10 * time.Second

// rendered is a cached rendering of the public page or API.
type rendered struct {
	at       time.Time
	body, gz []byte // gz: nil when too small to be worth it
}

// serveRendered writes what render returns. For the public it is rendered
// at most once every publicTTL, however many ask (they wait for the one
// rendering), and gzipped once.
func (s *Server) serveRendered(w http.ResponseWriter, r *http.Request, key, ctype string, render func() ([]byte, error)) {
	var c *rendered
	if s.opts.Public {
		s.cacheMu.Lock()
		c = s.cache[key]
		if now := s.opts.Now(); c == nil || now.Sub(c.at) >= publicTTL || now.Before(c.at) {
			c = nil
			if body, err := render(); err == nil {
				c = &rendered{at: now, body: body}
				if len(body) >= 1024 {
					var buf bytes.Buffer
					zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
					_, _ = zw.Write(body)
					_ = zw.Close()
					c.gz = buf.Bytes()
				}
				s.cache[key] = c
			}
		}
		s.cacheMu.Unlock()
	} else if body, err := render(); err == nil {
		c = &rendered{body: body}
	}
	if c == nil {
		http.Error(w, "the status page could not be rendered; see labgate's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "no-cache")
	if c.gz != nil {
		w.Header().Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write(c.gz)
			return
		}
		_, _ = w.Write(c.body)
		return
	}
	writeBody(w, r, c.body)
}

// writeBody writes a page or a JSON document, gzipped for clients that
// accept it: a page of 100 services shrinks about tenfold.
func writeBody(w http.ResponseWriter, r *http.Request, b []byte) {
	w.Header().Add("Vary", "Accept-Encoding")
	if len(b) < 1024 || !acceptsGzip(r.Header.Get("Accept-Encoding")) {
		_, _ = w.Write(b)
		return
	}
	w.Header().Set("Content-Encoding", "gzip")
	zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	_, _ = zw.Write(b)
	_ = zw.Close()
}

func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		if q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q="); ok {
			v, err := strconv.ParseFloat(q, 64)
			return err == nil && v > 0
		}
		return true
	}
	return false
}

func (s *Server) view(svc Service, now time.Time) serviceView {
	v := serviceView{Service: svc, Uptime90: "n/a", Uptime30: "n/a", LastCheck: "never"}
	if !svc.LastCheck.IsZero() {
		v.LastCheck = ago(now, svc.LastCheck)
	}
	if svc.Latency > 0 {
		v.LatencyStr = seconds(svc.Latency.Seconds())
	}
	if !svc.CertExpiry.IsZero() {
		left := svc.CertExpiry.Sub(now)
		v.Cert = "expires " + svc.CertExpiry.UTC().Format("2006-01-02") + " (" + days(left) + ")"
		switch {
		case left <= 0:
			v.CertLevel, v.Cert = "expired", "expired "+svc.CertExpiry.UTC().Format("2006-01-02")
		case left < 14*24*time.Hour:
			v.CertLevel = "soon"
		default:
			v.CertLevel = "ok"
		}
	}
	if s.opts.History == nil {
		return v
	}
	if ds, err := s.opts.History.Days(svc.Name, "", now, barDays); err == nil {
		v.Bars = template.HTML(uptimeBars(ds, false))
		v.Uptime90 = percent(history.Merge(ds).Uptime())
		v.Uptime30 = percent(history.Merge(ds[len(ds)-30:]).Uptime())
	} else {
		s.opts.Log.Warn("reading the health history", "service", svc.Name, "error", err)
	}
	if fine, err := s.opts.History.Fine(svc.Name, "", now.Add(-24*time.Hour), now); err == nil {
		v.Chart = template.HTML(inlineChart("latency, 24 hours", latencyPoints(coarsen(fine, 3), 3*history.FineStep), now.Add(-24*time.Hour), now, 600, 140, seconds))
	}
	return v
}

// coarsen merges every k buckets into one: a chart on a page needs no more
// points than it has pixels to spare.
func coarsen(bs []history.Bucket, k int) []history.Bucket {
	out := make([]history.Bucket, 0, (len(bs)+k-1)/k)
	for i := 0; i < len(bs); i += k {
		out = append(out, history.Merge(bs[i:min(i+k, len(bs))]))
	}
	return out
}

// ago says how long ago t was, for people.
func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + " s ago"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + " min ago"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + " h ago"
	}
	return strconv.Itoa(int(d.Hours()/24)) + " days ago"
}

func days(d time.Duration) string {
	n := int(d.Hours() / 24)
	if n == 1 {
		return "in 1 day"
	}
	return "in " + strconv.Itoa(n) + " days"
}

// relayChart draws the round trip of the relay path measurements.
func relayChart(rel *Relay, now time.Time) string {
	if len(rel.Samples) == 0 {
		return ""
	}
	pts := make([]point, len(rel.Samples))
	for i, smp := range rel.Samples {
		pts[i] = point{t: smp.Time, lo: smp.RTT, avg: smp.RTT, hi: smp.RTT, valid: smp.Err == "", failed: smp.Err != ""}
	}
	end := rel.Samples[len(rel.Samples)-1].Time
	if now.After(end) {
		end = now
	}
	return string(inlineChart("relay path round trip", pts, rel.Samples[0].Time, end, 600, 140, seconds))
}

// The JSON API.

// apiService is a service in the JSON API.
type apiService struct {
	Service
	LatencySeconds float64  `json:"latency_seconds,omitempty"`
	Uptime30       *float64 `json:"uptime_30d"` // null: nothing known
	Uptime90       *float64 `json:"uptime_90d"`
	CertDaysLeft   *float64 `json:"cert_days_left,omitempty"`
}

type apiStatus struct {
	Time       time.Time    `json:"time"`
	Revision   string       `json:"revision,omitempty"`
	Generation int          `json:"generation"`
	Services   []apiService `json:"services"`
	Relay      *Relay       `json:"relay,omitempty"`
	// Problems: [] when there are none; absent from the public API.
	Problems []Problem `json:"problems,omitzero"`
}

type apiDay struct {
	Date     string   `json:"date"`
	Uptime   *float64 `json:"uptime"` // null: no data
	Up       uint32   `json:"up_seconds"`
	Degraded uint32   `json:"degraded_seconds"`
	Down     uint32   `json:"down_seconds"`
	Unknown  uint32   `json:"unknown_seconds"`
}

type apiLatency struct {
	Time  time.Time `json:"time"`
	Count uint32    `json:"count"`
	Min   float64   `json:"min_seconds"`
	Avg   float64   `json:"avg_seconds"`
	Max   float64   `json:"max_seconds"`
	Down  uint32    `json:"down_seconds,omitempty"`
}

type apiServiceDetail struct {
	apiService
	Days    []apiDay     `json:"days"`       // 90, oldest first
	Latency []apiLatency `json:"latency_5m"` // the last 24 hours, five-minute buckets with data
}

func ratio(u float64) *float64 {
	if u < 0 {
		return nil
	}
	return &u
}

func (s *Server) apiService(svc Service, now time.Time) (apiService, []history.Bucket) {
	a := apiService{Service: svc, LatencySeconds: svc.Latency.Seconds()}
	if a.Hosts == nil {
		a.Hosts = []string{}
	}
	if !svc.CertExpiry.IsZero() {
		d := svc.CertExpiry.Sub(now).Hours() / 24
		a.CertDaysLeft = &d
	}
	if s.opts.History == nil {
		return a, nil
	}
	ds, err := s.opts.History.Days(svc.Name, "", now, barDays)
	if err != nil {
		return a, nil
	}
	a.Uptime90 = ratio(history.Merge(ds).Uptime())
	a.Uptime30 = ratio(history.Merge(ds[len(ds)-30:]).Uptime())
	return a, ds
}

func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	s.serveRendered(w, r, "api", "application/json", func() ([]byte, error) {
		now := s.opts.Now()
		snap := s.snapshot()
		out := apiStatus{Time: now.UTC(), Revision: snap.Revision, Generation: snap.Generation, Relay: snap.Relay, Services: []apiService{}}
		if !s.opts.Public {
			out.Problems = append([]Problem{}, snap.Problems...)
		}
		for _, svc := range snap.Services {
			a, _ := s.apiService(svc, now)
			out.Services = append(out.Services, a)
		}
		return jsonBody(out), nil
	})
}

func (s *Server) serveService(w http.ResponseWriter, r *http.Request) {
	now := s.opts.Now()
	svc, ok := s.find(r.PathValue("name"))
	if !ok {
		http.Error(w, fmt.Sprintf("no service named %q", r.PathValue("name")), http.StatusNotFound)
		return
	}
	a, ds := s.apiService(svc, now)
	out := apiServiceDetail{apiService: a, Days: []apiDay{}, Latency: []apiLatency{}}
	for _, d := range ds {
		out.Days = append(out.Days, apiDay{Date: d.Start.Format("2006-01-02"), Uptime: ratio(d.Uptime()),
			Up: d.Seconds[history.Up], Degraded: d.Seconds[history.Degraded], Down: d.Seconds[history.Down], Unknown: d.Seconds[history.Unknown]})
	}
	if s.opts.History != nil {
		fine, _ := s.opts.History.Fine(svc.Name, "", now.Add(-24*time.Hour), now)
		for _, b := range fine {
			if b.Count == 0 && b.Seconds[history.Down] == 0 {
				continue
			}
			out.Latency = append(out.Latency, apiLatency{Time: b.Start, Count: b.Count, Min: b.Min().Seconds(),
				Avg: b.Avg().Seconds(), Max: b.Max().Seconds(), Down: b.Seconds[history.Down]})
		}
	}
	writeJSON(w, r, out)
}

func writeJSON(w http.ResponseWriter, r *http.Request, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	writeBody(w, r, jsonBody(v))
}

func jsonBody(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
	return buf.Bytes()
}

// Badges and charts: stable URLs for READMEs. They carry an ETag (a hash
// of the body) and a short max-age, so a README's image proxy (GitHub's
// camo) refreshes them without hammering labgate.

func (s *Server) serveStateBadge(w http.ResponseWriter, r *http.Request) {
	svc, ok := s.find(r.PathValue("service"))
	if !ok {
		serveSVG(w, r, badge(r.PathValue("service"), "not found", colorOf("unknown")), 60, http.StatusNotFound)
		return
	}
	label := r.URL.Query().Get("label")
	if label == "" {
		label = svc.Name
	}
	serveSVG(w, r, badge(label, svc.State, colorOf(svc.State)), 60, http.StatusOK)
}

// intParam reads a positive integer query parameter, def when absent,
// clamped to at most hi.
func intParam(r *http.Request, name string, def, hi int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > hi {
		return 0, fmt.Errorf("%s: want a whole number from 1 to %d", name, hi)
	}
	return n, nil
}

func (s *Server) serveUptimeBadge(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("service")
	n, err := intParam(r, "days", 30, 400)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	label := r.URL.Query().Get("label")
	if label == "" {
		label = "uptime " + strconv.Itoa(n) + "d"
	}
	if _, ok := s.find(name); !ok || s.opts.History == nil {
		serveSVG(w, r, badge(label, "not found", colorOf("unknown")), 60, http.StatusNotFound)
		return
	}
	ds, err := s.opts.History.Days(name, "", s.opts.Now(), n)
	if err != nil {
		http.Error(w, "reading the health history failed", http.StatusInternalServerError)
		s.opts.Log.Warn("reading the health history", "service", name, "error", err)
		return
	}
	u := history.Merge(ds).Uptime()
	color := colorOf("up")
	switch {
	case u < 0:
		color = colorOf("unknown")
	case u < 0.99:
		color = colorOf("down")
	case u < 0.999:
		color = colorOf("degraded")
	}
	serveSVG(w, r, badge(label, percent(u), color), 300, http.StatusOK)
}

func (s *Server) serveLatencyChart(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("service")
	if _, ok := s.find(name); !ok || s.opts.History == nil {
		http.Error(w, fmt.Sprintf("no service named %q", name), http.StatusNotFound)
		return
	}
	now := s.opts.Now()
	var pts []point
	var from time.Time
	var title string
	if r.URL.Query().Has("days") {
		n, err := intParam(r, "days", 30, 400)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ds, err := s.opts.History.Days(name, "", now, n)
		if err != nil {
			http.Error(w, "reading the health history failed", http.StatusInternalServerError)
			return
		}
		pts, from, title = latencyPoints(ds, history.Day), ds[0].Start, fmt.Sprintf("%s latency, %d days", name, n)
	} else {
		n, err := intParam(r, "hours", 24, 14*24)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		from = now.Add(-time.Duration(n) * time.Hour)
		fine, err := s.opts.History.Fine(name, "", from, now)
		if err != nil {
			http.Error(w, "reading the health history failed", http.StatusInternalServerError)
			return
		}
		pts, title = latencyPoints(fine, history.FineStep), fmt.Sprintf("%s latency, %d hours", name, n)
	}
	serveSVG(w, r, lineChart(title, pts, from, now, 600, 160, seconds), 300, http.StatusOK)
}

func (s *Server) serveUptimeChart(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("service")
	n, err := intParam(r, "days", barDays, 400)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if _, ok := s.find(name); !ok || s.opts.History == nil {
		http.Error(w, fmt.Sprintf("no service named %q", name), http.StatusNotFound)
		return
	}
	ds, err := s.opts.History.Days(name, "", s.opts.Now(), n)
	if err != nil {
		http.Error(w, "reading the health history failed", http.StatusInternalServerError)
		return
	}
	bars := uptimeBars(ds, true)
	serveSVG(w, r, []byte(bars), 300, http.StatusOK)
}

// serveSVG writes an SVG body with Cache-Control, an ETag of the body, and
// 304 when the client already has it.
func serveSVG(w http.ResponseWriter, r *http.Request, body []byte, maxAge int, code int) {
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:12]) + `"`
	h := w.Header()
	h.Set("Content-Type", "image/svg+xml; charset=utf-8")
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(maxAge))
	h.Set("ETag", etag)
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	if code == http.StatusOK && etagMatch(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// etagMatch reports whether an If-None-Match header lists etag (or is *).
func etagMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}
