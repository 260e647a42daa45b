package status

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// The admin page shows the open problems above the services: title, since
// when, and the detail line by line, escaped; the API lists them.
func TestPageShowsProblems(t *testing.T) {
	page := body(t, get(t, newServer(t, false), "/"))
	block, _, ok := strings.Cut(page, `<ul class="services"`)
	if !ok || !strings.Contains(block, `id="problems"`) {
		t.Fatalf("no problems block above the services:\n%s", page)
	}
	for _, want := range []string{
		`Needs your attention: 2 problems`,
		`<li class="problem" data-cause="state/history.db.damaged-20260629T101500Z">`,
		`<h3>state_dir/history.db was damaged: moved aside, started afresh</h3>`,
		`since 2026-06-30 09:00 UTC (3 h ago)</p>`,
		`<p class="detail">The damaged copy is kept at /var/lib/labgate/history.db.damaged-20260629T101500Z for you to inspect or delete.</p>`,
		`since 2026-06-30 10:30 UTC (1 h ago) · changed 2 min ago`,
		`<p class="detail">labgate retries &lt;with a growing delay&gt;.</p>`,
	} {
		if !strings.Contains(block, want) {
			t.Errorf("the problems block lacks %q:\n%s", want, block)
		}
	}
	// Oldest first, as the source gives them.
	if strings.Index(block, `data-cause="state/`) > strings.Index(block, `data-cause="dns"`) {
		t.Error("problems not in the source's order")
	}

	var api struct {
		Problems []Problem `json:"problems"`
	}
	if err := json.Unmarshal([]byte(body(t, get(t, newServer(t, false), "/api/status"))), &api); err != nil {
		t.Fatal(err)
	}
	if len(api.Problems) != 2 || api.Problems[1].Cause != "dns" || !strings.Contains(api.Problems[1].Detail, "i/o timeout") || !api.Problems[1].Since.Equal(now.Add(-90*time.Minute)) {
		t.Errorf("API problems %+v", api.Problems)
	}
}

// Without problems: no block, and an empty list in the API.
func TestPageWithoutProblems(t *testing.T) {
	snap := lab()
	snap.Problems = nil
	h := New(Options{Source: SourceFunc(func() Snapshot { return snap }), History: store(t), Now: func() time.Time { return now }})
	if page := body(t, get(t, h, "/")); strings.Contains(page, `id="problems"`) || strings.Contains(page, "attention") {
		t.Errorf("a problems block without problems:\n%s", page)
	}
	if b := body(t, get(t, h, "/api/status")); !strings.Contains(b, `"problems": []`) {
		t.Errorf("the API has no empty problems list:\n%s", b)
	}
}

// The public API has no problems key at all.
func TestPublicAPIHasNoProblems(t *testing.T) {
	b := body(t, get(t, newServer(t, true), "/api/status"))
	var m map[string]any
	if err := json.Unmarshal([]byte(b), &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["problems"]; ok {
		t.Errorf("the public API has problems:\n%s", b)
	}
}

func TestReferTo(t *testing.T) {
	problems := []Problem{{Cause: "dns", Title: "DNS records of lab.test not reconciled",
		Detail: "listing lab.test: connection refused\nlabgate retries with a growing delay."}}
	for detail, want := range map[string]string{
		"listing lab.test: connection refused":                                               "see “DNS records of lab.test not reconciled” above",
		"in place, but the last reconciliation failed: listing lab.test: connection refused": "in place, but the last reconciliation failed: see “DNS records of lab.test not reconciled” above",
		"a record labgate does not own":                                                      "a record labgate does not own",
		"":                                                                                   "",
	} {
		if got := referTo(detail, problems); got != want {
			t.Errorf("referTo(%q) = %q, want %q", detail, got, want)
		}
	}
}
