package status

import (
	"compress/gzip"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/labgate/labgate/internal/history"
)

var now = time.Date(2026, 6, 30, 12, 0, 0, 0, time.UTC)

// lab is a snapshot of three services and a relay path.
func lab() Snapshot {
	return Snapshot{
		Revision:   "3f2a9c1",
		Generation: 2,
		Services: []Service{
			{Name: "vaultwarden", Class: "private", Hosts: []string{"vault.example.org"}, State: "up", LastCheck: now.Add(-20 * time.Second),
				Latency: 12 * time.Millisecond, Backends: []Backend{{URL: "http://192.168.1.20:8080", Up: true}}, CertExpiry: now.Add(60 * 24 * time.Hour)},
			{Name: "blog", Class: "public", Hosts: []string{"blog.example.org"}, State: "down", Cause: "backend 192.168.1.21:80: connection refused",
				CertExpiry: now.Add(5 * 24 * time.Hour), DNS: "failing", DNSDetail: "the provider refused the token"},
			{Name: "mail", Class: "public", Ports: []string{"tcp/25"}, State: "unknown"},
		},
		Relay: &Relay{Address: "100.90.0.1:9199", State: "up", Samples: []RelaySample{
			{Time: now.Add(-10 * time.Minute), RTT: 0.021, Down: 12e6, Up: 3e6},
			{Time: now.Add(-5 * time.Minute), Err: "timeout"},
		}},
		Problems: []Problem{
			{Cause: "state/history.db.damaged-20260629T101500Z", Title: "state_dir/history.db was damaged: moved aside, started afresh",
				Detail: "The health history was damaged.\nThe damaged copy is kept at /var/lib/labgate/history.db.damaged-20260629T101500Z for you to inspect or delete.",
				Since:  now.Add(-3 * time.Hour), Changed: now.Add(-3 * time.Hour)},
			{Cause: "dns", Title: "DNS records of example.org not reconciled", Detail: "dial udp 10.0.0.53:53: i/o timeout\nlabgate retries <with a growing delay>.",
				Since: now.Add(-90 * time.Minute), Changed: now.Add(-2 * time.Minute)},
		},
	}
}

// store returns a history with 90 days of the vaultwarden service: up, but
// down for an hour on each of the days 10 and 40 ago, and no data for the
// first 30 days.
func store(t *testing.T) *history.Store {
	t.Helper()
	s, err := history.Open(filepath.Join(t.TempDir(), history.FileName), history.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	var smps []history.Sample
	start := now.Truncate(history.Day).Add(-59 * history.Day)
	for tm := start; !tm.After(now); tm = tm.Add(5 * time.Minute) {
		st := history.Up
		day := int(now.Sub(tm) / history.Day)
		if (day == 10 || day == 40) && tm.Hour() == 3 {
			st = history.Down
		}
		smps = append(smps, history.Sample{Service: "vaultwarden", Time: tm, State: st, Latency: time.Duration(10+tm.Minute()/5) * time.Millisecond})
	}
	if err := s.RecordAll(smps); err != nil {
		t.Fatal(err)
	}
	return s
}

func newServer(t *testing.T, public bool) http.Handler {
	return New(Options{Source: SourceFunc(lab), History: store(t), Public: public, Now: func() time.Time { return now }})
}

func get(t *testing.T, h http.Handler, target string, hdr ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest("GET", target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPage(t *testing.T) {
	h := newServer(t, false)
	res := get(t, h, "/")
	page := body(t, res)
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`data-name="vaultwarden" data-state="up"`,
		`data-name="blog" data-state="down"`,
		`data-name="mail" data-state="unknown"`,
		`backend 192.168.1.21:80: connection refused`,
		`class="cert cert-soon">expires 2026-07-05 (in 5 days)`,
		`class="dns dns-failing">failing · the provider refused the token`,
		`id="revision">3f2a9c1<`,
		`<dd class="rtt">21ms</dd>`,
		`Some services are down`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	// 90 bars per service with history; day 10 and 40 ago are down, the first
	// 30 days have no data.
	li := page[strings.Index(page, `id="svc-vaultwarden"`):strings.Index(page, `id="svc-blog"`)]
	bars := regexp.MustCompile(`class="day (\w+)"`).FindAllStringSubmatch(li, -1)
	if len(bars) != 90 {
		t.Fatalf("%d uptime bars, want 90", len(bars))
	}
	for i, b := range bars {
		want := "up"
		switch ago := 89 - i; {
		case ago >= 60:
			want = "nodata"
		case ago == 10 || ago == 40:
			want = "down"
		}
		if b[1] != want {
			t.Errorf("bar of %d days ago is %s, want %s", 89-i, b[1], want)
		}
	}
	// 58 days at 1440 min up, 2 with one hour down, today half a day.
	if !strings.Contains(li, `<span class="u90">99.8`) {
		t.Errorf("90-day uptime not 99.8x%%: %s", regexp.MustCompile(`u90">[^<]*`).FindString(li))
	}
	// Nothing is loaded from elsewhere: no scripts, no stylesheets, no images by URL.
	for _, bad := range []string{"<script", "<link", "<img", "src=", "@import", "url(http"} {
		if strings.Contains(page, bad) {
			t.Errorf("the page contains %q", bad)
		}
	}
}

func TestPublicPageShowsPublicServicesOnly(t *testing.T) {
	h := newServer(t, true)
	page := body(t, get(t, h, "/"))
	if strings.Contains(page, "vaultwarden") || strings.Contains(page, "192.168.1") || strings.Contains(page, "3f2a9c1") || strings.Contains(page, "100.90.0.1") {
		t.Errorf("the public page shows a private service, a backend, a cause, the revision or the relay address:\n%s", page)
	}
	if !strings.Contains(page, `data-name="blog"`) || !strings.Contains(page, `data-name="mail"`) {
		t.Errorf("the public page lacks the public services")
	}
	if res := get(t, h, "/badge/vaultwarden/state.svg"); res.StatusCode != 404 {
		t.Errorf("a private service's badge on the public page: %d, want 404", res.StatusCode)
	}
	if res := get(t, h, "/api/services/vaultwarden"); res.StatusCode != 404 {
		t.Errorf("a private service in the public API: %d, want 404", res.StatusCode)
	}
}

func TestAPI(t *testing.T) {
	h := newServer(t, false)
	var st struct {
		Revision string `json:"revision"`
		Services []struct {
			Name     string   `json:"name"`
			State    string   `json:"state"`
			Uptime30 *float64 `json:"uptime_30d"`
			CertDays *float64 `json:"cert_days_left"`
		} `json:"services"`
		Relay *Relay `json:"relay"`
	}
	if err := json.Unmarshal([]byte(body(t, get(t, h, "/api/status"))), &st); err != nil {
		t.Fatal(err)
	}
	if st.Revision != "3f2a9c1" || len(st.Services) != 3 || st.Relay == nil || len(st.Relay.Samples) != 2 {
		t.Fatalf("/api/status = %+v", st)
	}
	if s := st.Services[0]; s.Name != "vaultwarden" || s.State != "up" || s.Uptime30 == nil || *s.Uptime30 >= 1 || *s.Uptime30 < 0.99 || *s.CertDays != 60 {
		t.Errorf("vaultwarden in /api/status: %+v", s)
	}
	if s := st.Services[1]; s.Uptime30 != nil {
		t.Errorf("blog has no history, yet its uptime is %v", *s.Uptime30)
	}

	var d struct {
		Name string `json:"name"`
		Days []struct {
			Date   string   `json:"date"`
			Uptime *float64 `json:"uptime"`
			Down   uint32   `json:"down_seconds"`
		} `json:"days"`
		Latency []struct {
			Count uint32  `json:"count"`
			Min   float64 `json:"min_seconds"`
			Max   float64 `json:"max_seconds"`
		} `json:"latency_5m"`
	}
	if err := json.Unmarshal([]byte(body(t, get(t, h, "/api/services/vaultwarden"))), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Days) != 90 || d.Days[89].Date != "2026-06-30" || d.Days[0].Uptime != nil || d.Days[79].Down != 3600 {
		t.Errorf("days: %d, last %+v, first %+v, 10 days ago %+v", len(d.Days), d.Days[len(d.Days)-1], d.Days[0], d.Days[79])
	}
	if len(d.Latency) != 24*12+1 {
		t.Errorf("%d five-minute latency buckets in 24 h, want %d", len(d.Latency), 24*12+1)
	}
	if res := get(t, h, "/api/services/nope"); res.StatusCode != 404 {
		t.Errorf("an unknown service: %d, want 404", res.StatusCode)
	}
}

func TestBadgesAndCharts(t *testing.T) {
	h := newServer(t, false)
	tests := []struct {
		path, text string
		maxAge     string
	}{
		{"/badge/vaultwarden/state.svg", "vaultwarden: up", "60"},
		{"/badge/blog/state.svg?label=my+blog", "my blog: down", "60"},
		{"/badge/vaultwarden/uptime.svg", "uptime 30d: 99.85%", "300"},
		{"/badge/vaultwarden/uptime.svg?days=7", "uptime 7d: 100%", "300"},
		{"/badge/blog/uptime.svg", "uptime 30d: n/a", "300"},
		{"/chart/vaultwarden/latency.svg", "vaultwarden latency, 24 hours", "300"},
		{"/chart/vaultwarden/latency.svg?days=30", "vaultwarden latency, 30 days", "300"},
		{"/chart/vaultwarden/uptime.svg", "", "300"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			res := get(t, h, tt.path)
			svg := body(t, res)
			if res.StatusCode != 200 || res.Header.Get("Content-Type") != "image/svg+xml; charset=utf-8" {
				t.Fatalf("%d %s", res.StatusCode, res.Header.Get("Content-Type"))
			}
			if got := res.Header.Get("Cache-Control"); got != "public, max-age="+tt.maxAge {
				t.Errorf("Cache-Control %q", got)
			}
			// A well-formed SVG document on its own, as a README embeds it.
			var doc struct {
				XMLName xml.Name
				Title   string `xml:"title"`
			}
			if err := xml.Unmarshal([]byte(svg), &doc); err != nil || doc.XMLName.Local != "svg" || doc.XMLName.Space != "http://www.w3.org/2000/svg" {
				t.Fatalf("not a standalone SVG (%v): %.200s", err, svg)
			}
			if doc.Title != tt.text {
				t.Errorf("title %q, want %q", doc.Title, tt.text)
			}
			etag := res.Header.Get("ETag")
			again := get(t, h, tt.path, "If-None-Match", etag)
			if again.StatusCode != http.StatusNotModified || body(t, again) != "" {
				t.Errorf("with If-None-Match %s: %d, want 304 without a body", etag, again.StatusCode)
			}
		})
	}
	for _, p := range []string{"/badge/nope/state.svg", "/chart/nope/latency.svg"} {
		if res := get(t, h, p); res.StatusCode != 404 {
			t.Errorf("%s = %d, want 404", p, res.StatusCode)
		}
	}
	for _, p := range []string{"/badge/vaultwarden/uptime.svg?days=0", "/badge/vaultwarden/uptime.svg?days=9999", "/chart/vaultwarden/latency.svg?hours=x"} {
		if res := get(t, h, p); res.StatusCode != 400 {
			t.Errorf("%s = %d, want 400", p, res.StatusCode)
		}
	}
}

func TestPercent(t *testing.T) {
	got := []string{percent(-1), percent(1), percent(0.99999), percent(0.9995), percent(0.9951), percent(0.873)}
	want := []string{"n/a", "100%", "99.999%", "99.950%", "99.51%", "87.3%"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestPageGzip(t *testing.T) {
	h := newServer(t, false)
	plain := body(t, get(t, h, "/"))
	res := get(t, h, "/", "Accept-Encoding", "br, gzip")
	if res.Header.Get("Content-Encoding") != "gzip" || !strings.Contains(res.Header.Get("Vary"), "Accept-Encoding") {
		t.Fatalf("Content-Encoding %q Vary %q", res.Header.Get("Content-Encoding"), res.Header.Get("Vary"))
	}
	zr, err := gzip.NewReader(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	unzipped, _ := io.ReadAll(zr)
	if string(unzipped) != plain {
		t.Errorf("the gzipped page differs from the plain one")
	}
	if res := get(t, h, "/api/status", "Accept-Encoding", "gzip;q=0"); res.Header.Get("Content-Encoding") != "" {
		t.Errorf("gzip;q=0 got gzip")
	}
}
