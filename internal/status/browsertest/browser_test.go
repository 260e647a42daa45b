// Package browsertest loads labgate's status page, served by a real daemon,
// in headless Chromium at desktop and phone widths, and keeps screenshots.
// It lives apart so that only this package pays for compiling chromedp and
// starting a browser.
package browsertest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/daemon"
	"github.com/labgate/labgate/internal/history"
	"github.com/labgate/labgate/internal/speedtest"
	"github.com/labgate/labgate/internal/testpeer"
)

const admin = "127.0.0.61:0"

const labFile = `version: 1
domain: lab.test
state_dir: ./state
gateway:
  private:
    http: [127.0.0.62:0]
    allow: [127.0.0.0/8]
  admin: ` + admin + `
services:
  - { name: www, host: www, expose: public, backend: "%[1]s" }
  - { name: vaultwarden, hosts: [vault, passwords.vault-and-a-rather-long-host-name], backend: "%[2]s" }
  - { name: nextcloud, host: cloud, backends: ["%[1]s", "http://127.0.0.1:1"], health: { path: /, interval: 1s, timeout: 1s } }
  - { name: gone, host: gone, backend: "http://127.0.0.1:1", health: { path: /, interval: 1s, timeout: 1s } }
  - { name: docs, host: docs, static: ./site }
relay:
  gateway: 127.0.0.63
  public_ips: [203.0.113.7]
  speedtest: { listen: "%[3]s", interval: 1s, budget: 262144, samples: 30 }
status:
  title: Lab status
`

// dnsSection names a DNS provider that does not answer (%[1]s, a closed
// port): reconciling fails, a problem for the status page.
const dnsSection = `dns:
  provider: { type: rfc2136, server: "%[1]s", tsig_name: lab-key., tsig_secret: c2VjcmV0 }
  owner: labtest
  interval: 1h
`

// running is the daemon startDaemon started.
type running struct {
	base  string
	d     *daemon.Daemon
	file  string // the config
	state string
	lab   string // labFile as written, without the DNS section
}

// seed writes 90 days of history for the services, as a running labgate
// would have: www always up, vaultwarden with two outages, gone down for
// the last two days, nextcloud only for the last 20 days.
func seed(t *testing.T, dir string) {
	t.Helper()
	st, err := history.Open(filepath.Join(dir, history.FileName), history.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	var smps []history.Sample
	for tm := now.Add(-90 * 24 * time.Hour); tm.Before(now); tm = tm.Add(5 * time.Minute) {
		ago := now.Sub(tm)
		lat := time.Duration(8+tm.Hour()%6) * time.Millisecond
		smps = append(smps, history.Sample{Service: "www", Time: tm, State: history.Up, Latency: lat})
		vw := history.Up
		// Outages from 00:00 to 02:00 UTC, 12 and 47 calendar days ago: each
		// falls on one day's bar whatever the time of day the test runs.
		today := now.UTC().Truncate(24 * time.Hour)
		if d := int(today.Sub(tm.UTC().Truncate(24*time.Hour)).Hours() / 24); (d == 12 || d == 47) && tm.UTC().Hour() < 2 {
			vw = history.Down
		}
		smps = append(smps, history.Sample{Service: "vaultwarden", Time: tm, State: vw, Latency: 2 * lat})
		g := history.Up
		if ago < 48*time.Hour {
			g = history.Down
		}
		smps = append(smps, history.Sample{Service: "gone", Time: tm, State: g, Latency: lat})
		if ago < 20*24*time.Hour {
			smps = append(smps, history.Sample{Service: "nextcloud", Time: tm, State: history.Degraded, Latency: 3 * lat})
		}
	}
	if err := st.RecordAll(smps); err != nil {
		t.Fatal(err)
	}
}

// startDaemon runs labgate serve on labFile with two problems that are no
// one service's: its relay-path.json was damaged, and its DNS provider
// does not answer.
func startDaemon(t *testing.T) running {
	t.Helper()
	dir := t.TempDir()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
	t.Cleanup(backend.Close)
	seed(t, filepath.Join(dir, "state"))
	// Cut short, as a power loss leaves it.
	if err := os.WriteFile(filepath.Join(dir, "state", "relay-path.json"), []byte(`{"version":1,"results":[{"time":"2026-11-26T01:00:00Z","rtt_sec`), 0o600); err != nil {
		t.Fatal(err)
	}
	closed := net.JoinHostPort("127.0.0.1", testpeer.FreePort(t, "127.0.0.1"))
	if err := os.MkdirAll(filepath.Join(dir, "site"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The relay's side of the relay path measurement, answering the gateway's address only.
	relayLn, err := net.Listen("tcp", "127.0.0.64:0")
	if err != nil {
		t.Fatal(err)
	}
	relaySrv := &http.Server{Handler: speedtest.Handler(func(a netip.Addr) bool { return a == netip.MustParseAddr("127.0.0.63") })}
	go func() { _ = relaySrv.Serve(relayLn) }()
	t.Cleanup(func() { relaySrv.Close() })
	file := filepath.Join(dir, "lab.yaml")
	lab := fmt.Sprintf(labFile, backend.URL, backend.URL, relayLn.Addr().String())
	if err := os.WriteFile(file, []byte(lab+fmt.Sprintf(dnsSection, closed)), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &testpeer.Buffer{}
	ready := make(chan *daemon.Daemon, 1)
	d := daemon.New(daemon.Options{
		Load:   func() (*config.Config, error) { return config.Load(file, config.Options{}) },
		Stderr: logs,
		Ready:  func(d *daemon.Daemon) { ready <- d },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("daemon logs:\n%s", logs)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("daemon stopped: %v\n%s", err, logs)
	case <-time.After(15 * time.Second):
		t.Fatalf("daemon did not start\n%s", logs)
	}
	base := "http://" + d.Addr(admin).String()
	// The active checks find gone and one of nextcloud's backends down
	// within a second; the first sample into the history follows, and a
	// few measurements of the relay path.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		res, err := http.Get(base + "/api/services/gone")
		if err == nil {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			ok := strings.Contains(string(b), `"state": "down"`) && strings.Contains(string(b), `"last_check"`)
			if res, err = http.Get(base + "/api/relay-path"); err == nil {
				b, _ = io.ReadAll(res.Body)
				res.Body.Close()
				if ok && strings.Count(string(b), `"rtt_seconds"`) >= 3 {
					break
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The two problems, raised as the daemon started.
	for time.Now().Before(deadline) {
		if res, err := http.Get(base + "/api/status"); err == nil {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if strings.Contains(string(b), `"cause": "dns"`) && strings.Contains(string(b), `"cause": "state/relay-path.json.damaged-`) {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return running{base: base, d: d, file: file, state: filepath.Join(dir, "state"), lab: lab}
}

// fix removes what caused the problems: the damaged copy is deleted, the
// DNS section goes, and the file is reloaded.
func (r running) fix(t *testing.T) {
	t.Helper()
	asides, _ := filepath.Glob(filepath.Join(r.state, "relay-path.json.damaged-*"))
	if len(asides) != 1 {
		t.Fatalf("copies of relay-path.json aside: %v", asides)
	}
	if err := os.Remove(asides[0]); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.file, []byte(r.lab), 0o644); err != nil {
		t.Fatal(err)
	}
	if !r.d.Reload() {
		t.Fatal("reload refused")
	}
}

// artifacts is where screenshots go: $LABGATE_ARTIFACTS, or .artifacts/ at
// the top of the repository (ignored by git).
func artifacts(t *testing.T) string {
	dir := os.Getenv("LABGATE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", ".artifacts")
	}
	dir, _ = filepath.Abs(filepath.Join(dir, "status"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// pageFacts is what the test reads from the DOM.
type pageFacts struct {
	Title       string     `json:"title"`
	Overall     string     `json:"overall"`
	Services    [][]string `json:"services"` // name, data-state, state pill text
	Bars        []int      `json:"bars"`     // uptime bars per service
	NoData      []int      `json:"nodata"`   // of them, days without data
	DownDays    []int      `json:"down"`
	ScrollWidth int        `json:"scrollWidth"`
	InnerWidth  int        `json:"innerWidth"`
	WidestRight float64    `json:"widestRight"` // the rightmost edge of any element
	Charts      int        `json:"charts"`
	ChartRight  float64    `json:"chartRight"`
	Scripts     int        `json:"scripts"`
	Relay       string     `json:"relay"` // data-state
	RelayRTT    string     `json:"rtt"`
	FontPx      float64    `json:"fontPx"`
	// The problems block: each problem's cause, title and detail lines;
	// whether the block comes before the services.
	Problems      [][]string `json:"problems"`
	ProblemsFirst bool       `json:"problemsFirst"`
	ProblemsTitle string     `json:"problemsTitle"`
}

const readFacts = `(() => {
  document.querySelectorAll('details').forEach(d => d.open = true);
  const svcs = [...document.querySelectorAll('li.service')];
  let widest = 0;
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0) widest = Math.max(widest, r.right);
  }
  const charts = [...document.querySelectorAll('svg.chart')];
  return {
    title: document.title,
    overall: document.querySelector('#overall').textContent.trim(),
    services: svcs.map(li => [li.dataset.name, li.dataset.state, li.querySelector('.pill.state').textContent.trim()]),
    bars: svcs.map(li => li.querySelectorAll('rect.day').length),
    nodata: svcs.map(li => li.querySelectorAll('rect.day.nodata').length),
    down: svcs.map(li => li.querySelectorAll('rect.day.down').length),
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    widestRight: widest,
    charts: charts.length,
    chartRight: Math.max(0, ...charts.map(c => c.getBoundingClientRect().right)),
    scripts: document.scripts.length,
    relay: document.querySelector('#relay')?.dataset.state ?? '',
    rtt: document.querySelector('#relay .rtt')?.textContent ?? '',
    fontPx: parseFloat(getComputedStyle(document.body).fontSize),
    problems: [...document.querySelectorAll('#problems li.problem')].map(li =>
      [li.dataset.cause, li.querySelector('h3').textContent, ...[...li.querySelectorAll('.detail')].map(p => p.textContent)]),
    problemsFirst: !!document.querySelector('#problems') &&
      !!(document.querySelector('#problems').compareDocumentPosition(document.querySelector('#services')) & Node.DOCUMENT_POSITION_FOLLOWING),
    problemsTitle: document.querySelector('#problems h2')?.textContent ?? '',
  };
})()`

func TestStatusPageInChromium(t *testing.T) {
	chromium := testpeer.Need(t, "chromium", "chromium-browser")
	r := startDaemon(t)
	base := r.base
	out := artifacts(t)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer acancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()

	var mu sync.Mutex
	var requests []string
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			requests = append(requests, e.Request.URL)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}

	type viewport struct {
		name          string
		width, height int64
		opts          []chromedp.EmulateViewportOption
	}
	viewports := []viewport{
		{"desktop", 1280, 900, nil},
		{"phone", 390, 844, []chromedp.EmulateViewportOption{chromedp.EmulateScale(2), chromedp.EmulateMobile, chromedp.EmulateTouch}},
	}
	// look loads the page at vp, keeps a screenshot named status-<shot>.png
	// and checks what holds of every page: no script, no sideways
	// scrolling, a phone's viewport, readable text.
	look := func(t *testing.T, vp viewport, shot string) pageFacts {
		t.Helper()
		tctx, tcancel := context.WithTimeout(ctx, 30*time.Second)
		defer tcancel()
		err := chromedp.Do(tctx,
			chromedp.EmulateViewport(vp.width, vp.height, vp.opts...),
			chromedp.Navigate(base+"/"),
			chromedp.WaitVisible("#services"),
		)
		if err != nil {
			t.Fatal(err)
		}
		f, err := chromedp.Run(tctx, chromedp.Evaluate[pageFacts](readFacts))
		if err != nil {
			t.Fatal(err)
		}
		png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(out, "status-"+shot+".png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", path, len(png))
		if f.Scripts != 0 {
			t.Errorf("%d scripts on a page that needs none", f.Scripts)
		}
		// Nothing is wider than the screen: no sideways scrolling on a phone.
		if f.ScrollWidth > f.InnerWidth || f.WidestRight > float64(f.InnerWidth)+0.5 || f.ChartRight > float64(f.InnerWidth)+0.5 {
			t.Errorf("horizontal overflow at %d px: scrollWidth %d, rightmost element %.1f, rightmost chart %.1f",
				f.InnerWidth, f.ScrollWidth, f.WidestRight, f.ChartRight)
		}
		if f.InnerWidth != int(vp.width) {
			t.Errorf("viewport %d px, want %d (the page must set a width=device-width viewport)", f.InnerWidth, vp.width)
		}
		if f.FontPx < 14 {
			t.Errorf("body text %.1f px: too small to read on a phone", f.FontPx)
		}
		return f
	}

	// First with its two problems: they come before the services, with
	// their title and the detail that says what to do.
	for _, vp := range viewports {
		t.Run("problems-"+vp.name, func(t *testing.T) {
			f := look(t, vp, "problems-"+vp.name)
			if len(f.Problems) != 2 || !f.ProblemsFirst || f.ProblemsTitle != "Needs your attention: 2 problems" {
				t.Fatalf("problems %q (title %q), before the services: %v", f.Problems, f.ProblemsTitle, f.ProblemsFirst)
			}
			causes := map[string][]string{}
			for _, p := range f.Problems {
				causes[strings.SplitN(p[0], "/", 2)[0]] = p[1:]
			}
			if p := causes["dns"]; len(p) < 3 || p[0] != "DNS records of lab.test not reconciled" || !strings.HasPrefix(p[len(p)-1], "labgate retries") {
				t.Errorf("DNS problem %q", p)
			}
			if p := causes["state"]; len(p) < 3 || p[0] != "state_dir/relay-path.json was damaged: moved aside, started afresh" ||
				!strings.Contains(strings.Join(p, " "), filepath.Join(r.state, "relay-path.json.damaged-")) {
				t.Errorf("state problem %q", p)
			}
		})
	}

	// Fixed: no block, and the page as it always was.
	r.fix(t)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if res, err := http.Get(base + "/api/status"); err == nil {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if strings.Contains(string(b), `"problems": []`) {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, vp := range viewports {
		t.Run(vp.name, func(t *testing.T) {
			f := look(t, vp, vp.name)
			if len(f.Problems) != 0 || f.ProblemsTitle != "" {
				t.Errorf("problems shown once fixed: %q %q", f.ProblemsTitle, f.Problems)
			}
			if f.Title != "Lab status" || f.Overall != "Some services are down" {
				t.Errorf("title %q, overall %q", f.Title, f.Overall)
			}
			want := [][]string{
				{"www", "up", "up"}, {"vaultwarden", "up", "up"}, {"nextcloud", "degraded", "degraded"},
				{"gone", "down", "down"}, {"docs", "up", "up"},
			}
			if fmt.Sprint(f.Services) != fmt.Sprint(want) {
				t.Errorf("services %v, want %v", f.Services, want)
			}
			// 90 bars each; nextcloud has 20 days of data, docs none; gone was
			// down the last two days (and today), vaultwarden on two days.
			if fmt.Sprint(f.Bars) != "[90 90 90 90 90]" {
				t.Errorf("uptime bars %v", f.Bars)
			}
			if f.NoData[0] != 0 || f.NoData[2] < 68 || f.NoData[2] > 70 || f.NoData[4] != 90 {
				t.Errorf("days without data %v", f.NoData)
			}
			if f.DownDays[1] != 2 || f.DownDays[3] < 2 || f.DownDays[3] > 3 || f.DownDays[0] != 0 {
				t.Errorf("down days %v", f.DownDays)
			}
			if f.Charts != 6 {
				t.Errorf("%d charts, want 6 (5 services, the relay path)", f.Charts)
			}
			if f.Relay != "up" || !regexp.MustCompile(`^[0-9.]+(µs|ms)$`).MatchString(f.RelayRTT) {
				t.Errorf("relay path %q, round trip %q", f.Relay, f.RelayRTT)
			}
		})
	}
	// Every request the browser made went to labgate's admin listener.
	mu.Lock()
	defer mu.Unlock()
	if len(requests) == 0 {
		t.Fatal("no request seen: the network events are not observed")
	}
	for _, u := range requests {
		if !strings.HasPrefix(u, base+"/") && !strings.HasPrefix(u, "data:") {
			t.Errorf("a request outside labgate: %s", u)
		}
	}
}
