package daemon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/testpeer"
)

// repoRoot is where deploy/ is, from this package's directory.
var repoRoot = filepath.Join("..", "..")

// scrapedLab starts a lab, sends traffic to both services (and one unknown
// host) so that the per-service series exist, and returns its /metrics.
func scrapedLab(t *testing.T) (*lab, string) {
	t.Helper()
	l := startLabWith(t, false, statusExtra)
	for _, h := range []string{"www.lab.test", "vault.lab.test", "gone.lab.test", "nobody.lab.test"} {
		c := l.client(l.addr(privHTTP), "", "")
		get(t, c, "http://"+h+"/") // a redirect to HTTPS, or 404
		c = l.client(l.addr(privHTTPS), "", "")
		get(t, c, "https://"+h+"/")
	}
	c := &http.Client{Timeout: 10 * time.Second}
	_, _, body := fetchStatus(t, c, "http://"+l.addr(admin)+"/metrics")
	for _, s := range []string{`labgate_http_requests_total{class="private",code="200",service="www"}`, `labgate_http_request_duration_seconds_bucket{class="private",service="vault",le="0.005"}`, `labgate_backend_up{backend="http://127.0.0.1:1",service="gone"} 0`} {
		if !strings.Contains(body, s) {
			t.Errorf("/metrics lacks %s", s)
		}
	}
	return l, body
}

// TestMetricsPromtool lints a real scrape of the admin /metrics.
func TestMetricsPromtool(t *testing.T) {
	promtool := testpeer.Need(t, "promtool")
	_, body := scrapedLab(t)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestPrometheusScrapes has a real Prometheus scrape the admin listener and
// reads the gateway's series back from its query API.
func TestPrometheusScrapes(t *testing.T) {
	bin := testpeer.Need(t, "prometheus")
	l, _ := scrapedLab(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "prometheus.yml")
	err := os.WriteFile(conf, []byte(fmt.Sprintf(`global: { scrape_interval: 1s, evaluation_interval: 1s }
rule_files: [%q]
scrape_configs:
  - job_name: labgate
    static_configs: [{ targets: [%q] }]
`, filepath.Join(mustAbs(t, repoRoot), "deploy", "prometheus", "labgate-rules.yml"), l.addr(admin))), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	web := "127.0.0.1:" + testpeer.FreePort(t, "127.0.0.1")
	p := testpeer.Start(t, bin, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+web, "--log.level=warn")
	testpeer.WaitPort(t, web)

	query := func(q string) []json.RawMessage {
		res, err := http.Get("http://" + web + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return nil
		}
		defer res.Body.Close()
		var out struct {
			Status string `json:"status"`
			Data   struct {
				Result []json.RawMessage `json:"result"`
			} `json:"data"`
		}
		if json.NewDecoder(res.Body).Decode(&out) != nil || out.Status != "success" {
			return nil
		}
		return out.Data.Result
	}
	want := []string{
		`labgate_http_requests_total{service="www",code="200"}`,
		`labgate_backend_up{service="gone"} == 0`,
		`up{job="labgate"} == 1`,
		`labgate_config_last_reload_successful == 1`,
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, q := range want {
		for len(query(q)) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("Prometheus has no result for %s\n%s", q, p.Output())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// The shipped rules load in the real Prometheus: gone's backend is
	// down, so LabgateBackendDown is pending (it fires after 5 minutes).
	for {
		res, err := http.Get("http://" + web + "/api/v1/rules")
		if err == nil {
			var rules struct {
				Data struct {
					Groups []struct {
						Rules []struct {
							Name   string `json:"name"`
							Health string `json:"health"`
							State  string `json:"state"`
						} `json:"rules"`
					} `json:"groups"`
				} `json:"data"`
			}
			err = json.NewDecoder(res.Body).Decode(&rules)
			res.Body.Close()
			if err == nil && len(rules.Data.Groups) == 1 {
				var pending []string
				for _, r := range rules.Data.Groups[0].Rules {
					if r.Health == "err" {
						t.Errorf("rule %s: health err", r.Name)
					}
					if r.State == "pending" {
						pending = append(pending, r.Name)
					}
				}
				if slices.Contains(pending, "LabgateBackendDown") {
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("LabgateBackendDown never pending\n%s", p.Output())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestPrometheusRules checks and unit-tests deploy/prometheus/labgate-rules.yml.
func TestPrometheusRules(t *testing.T) {
	promtool := testpeer.Need(t, "promtool")
	dir := filepath.Join(repoRoot, "deploy", "prometheus")
	for _, args := range [][]string{{"check", "rules", "labgate-rules.yml"}, {"test", "rules", "labgate-rules_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// agreedMetrics are the names the other parts of labgate export (or will):
// health, alerts, certificates, DNS and git.
var agreedMetrics = []string{
	"labgate_service_state", "labgate_check_success", "labgate_check_duration_seconds",
	"labgate_alert_notifications_total", "labgate_alert_queue_length",
	"labgate_cert_expiry_timestamp_seconds", "labgate_cert_events_total",
	"labgate_dns_reconcile_success", "labgate_dns_last_reconcile_success_timestamp_seconds", "labgate_dns_changes_total", "labgate_dns_conflicts",
	"labgate_git_revision_info", "labgate_git_last_sync_success_timestamp_seconds", "labgate_git_sync_failures_total",
}

// exportedMetrics are the names labgate's code registers: every
// `Name: "labgate_..."` in its non-test sources.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(`Name:\s+"(labgate_[a-z0-9_]+)"`)
	names := map[string]bool{}
	err := filepath.WalkDir(filepath.Join(repoRoot, "internal"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		b, err := os.ReadFile(p)
		for _, m := range re.FindAllSubmatch(b, -1) {
			names[string(m[1])] = true
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

var metricRef = regexp.MustCompile(`\blabgate_[a-z0-9_]+`)

// checkRefs reports every labgate_ name in expr that is neither exported
// nor agreed (histograms are known by their family name).
func checkRefs(t *testing.T, where, expr string, known map[string]bool) int {
	n := 0
	for _, m := range metricRef.FindAllString(expr, -1) {
		n++
		base := m
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(m, suf); ok && known[b] {
				base = b
			}
		}
		if !known[base] {
			t.Errorf("%s: %s is neither exported by labgate nor an agreed name", where, m)
		}
	}
	return n
}

// TestGrafanaDashboard parses deploy/grafana/labgate-dashboard.json and
// checks that every query names metrics labgate exports.
func TestGrafanaDashboard(t *testing.T) {
	known := exportedMetrics(t)
	for _, m := range agreedMetrics {
		known[m] = true
	}
	for _, m := range []string{"labgate_http_requests_total", "labgate_backend_up", "labgate_relay_path_rtt_seconds"} {
		if !known[m] {
			t.Fatalf("the source scan misses %s", m)
		}
	}
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "grafana", "labgate-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			ID      int                      `json:"id"`
			Title   string                   `json:"title"`
			Type    string                   `json:"type"`
			GridPos struct{ X, Y, W, H int } `json:"gridPos"`
			Targets []struct {
				Expr  string `json:"expr"`
				RefID string `json:"refId"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("the dashboard is not valid JSON: %v", err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Errorf("the dashboard needs a title and a uid")
	}
	ids := map[int]bool{}
	refs := 0
	for _, p := range dash.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24 columns", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" {
				t.Errorf("panel %q: a target without expr or refId", p.Title)
			}
			refs += checkRefs(t, "panel "+p.Title, tg.Expr, known)
		}
	}
	for _, v := range dash.Templating.List {
		checkRefs(t, "variable "+v.Name, v.Definition, known)
	}
	if refs < 20 {
		t.Errorf("only %d metric references in the dashboard", refs)
	}
	// The rules name only known metrics too.
	rules, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "prometheus", "labgate-rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(rules), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			checkRefs(t, "labgate-rules.yml", line, known)
		}
	}
}
