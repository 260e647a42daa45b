package dns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeCloudflare serves the calls of Cloudflare's v4 API the provider makes,
// as documented (developers.cloudflare.com/api, "DNS Records for a Zone" and
// "Zones"): Bearer token authentication, the {success, errors, messages,
// result, result_info} envelope, page/per_page pagination (per_page clamped
// to the server's maximum), exact name and type filters, and the documented
// refusals: an identical record, a CNAME next to other records, proxied on a
// type that cannot be proxied, a TTL below 60 other than 1 (automatic).
type fakeCloudflare struct {
	t          *testing.T
	token      string
	zoneID     string
	zoneName   string
	maxPerPage int

	mu      sync.Mutex
	records []cfRecord
	nextID  int
	calls   []string // "METHOD path"
	// refuse, if set, says whether a new record is refused (as the API
	// does, for one the fake does not model, or a rate limit).
	refuse func(cfRecord) bool
}

func newFakeCloudflare(t *testing.T, records ...cfRecord) (*fakeCloudflare, *httptest.Server) {
	f := &fakeCloudflare{t: t, token: "cf-test-token", zoneID: "023e105f4ecef8ad9ca31a8372d0c353", zoneName: "example.org", maxPerPage: 3}
	for _, r := range records {
		f.add(r)
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeCloudflare) add(r cfRecord) cfRecord {
	f.nextID++
	r.ID = fmt.Sprintf("rec%04d", f.nextID)
	if r.Proxied == nil {
		r.Proxied = new(bool)
	}
	f.records = append(f.records, r)
	return r
}

type envelope struct {
	Success    bool        `json:"success"`
	Errors     []cfMessage `json:"errors"`
	Messages   []cfMessage `json:"messages"`
	Result     any         `json:"result"`
	ResultInfo any         `json:"result_info,omitempty"`
}

func (f *fakeCloudflare) fail(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(envelope{Errors: []cfMessage{{code, msg}}, Messages: []cfMessage{}})
}

func (f *fakeCloudflare) ok(w http.ResponseWriter, result, info any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(envelope{Success: true, Errors: []cfMessage{}, Messages: []cfMessage{}, Result: result, ResultInfo: info})
}

func (f *fakeCloudflare) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		f.fail(w, http.StatusForbidden, 10000, "Authentication error")
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.Method == http.MethodGet && len(parts) == 1 && parts[0] == "zones":
		var zones []map[string]string
		if name := r.URL.Query().Get("name"); name == "" || name == f.zoneName {
			zones = append(zones, map[string]string{"id": f.zoneID, "name": f.zoneName, "status": "active"})
		}
		f.ok(w, zones, map[string]int{"page": 1, "per_page": 20, "count": len(zones), "total_count": len(zones), "total_pages": 1})
	case len(parts) >= 3 && parts[0] == "zones" && parts[2] == "dns_records":
		if parts[1] != f.zoneID {
			f.fail(w, http.StatusNotFound, 7003, "Could not route to /zones/"+parts[1]+"/dns_records, perhaps your object identifier is invalid?")
			return
		}
		f.records1(w, r, parts[3:])
	default:
		f.fail(w, http.StatusNotFound, 7000, "No route for that URI")
	}
}

func (f *fakeCloudflare) records1(w http.ResponseWriter, r *http.Request, rest []string) {
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodGet && len(rest) == 0:
		var match []cfRecord
		for _, rec := range f.records {
			if (q.Get("name") == "" || q.Get("name") == rec.Name) && (q.Get("type") == "" || q.Get("type") == rec.Type) {
				match = append(match, rec)
			}
		}
		page, perPage := atoiOr(q.Get("page"), 1), min(atoiOr(q.Get("per_page"), 100), f.maxPerPage)
		pages := max((len(match)+perPage-1)/perPage, 1)
		lo, hi := min((page-1)*perPage, len(match)), min(page*perPage, len(match))
		f.ok(w, append([]cfRecord{}, match[lo:hi]...), map[string]int{"page": page, "per_page": perPage, "count": hi - lo, "total_count": len(match), "total_pages": pages})
	case r.Method == http.MethodPost && len(rest) == 0:
		var in cfRecord
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			f.fail(w, http.StatusBadRequest, 9207, "Request body is invalid.")
			return
		}
		if code, msg := f.invalid(in, ""); code != 0 {
			f.fail(w, http.StatusBadRequest, code, msg)
			return
		}
		if f.refuse != nil && f.refuse(in) {
			f.fail(w, http.StatusTooManyRequests, 971, "Please wait and consider throttling your request speed")
			return
		}
		f.ok(w, f.add(in), nil)
	case (r.Method == http.MethodPatch || r.Method == http.MethodDelete) && len(rest) == 1:
		i := slices.IndexFunc(f.records, func(x cfRecord) bool { return x.ID == rest[0] })
		if i < 0 {
			f.fail(w, http.StatusNotFound, 81044, "Record does not exist.")
			return
		}
		if r.Method == http.MethodDelete {
			f.records = slices.Delete(f.records, i, i+1)
			f.ok(w, map[string]string{"id": rest[0]}, nil)
			return
		}
		var in cfRecord
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			f.fail(w, http.StatusBadRequest, 9207, "Request body is invalid.")
			return
		}
		merged := f.records[i]
		if in.Content != "" {
			merged.Content = in.Content
		}
		if in.TTL != 0 {
			merged.TTL = in.TTL
		}
		if in.Proxied != nil {
			merged.Proxied = in.Proxied
		}
		if code, msg := f.invalid(merged, merged.ID); code != 0 {
			f.fail(w, http.StatusBadRequest, code, msg)
			return
		}
		f.records[i] = merged
		f.ok(w, merged, nil)
	default:
		f.fail(w, http.StatusMethodNotAllowed, 10405, "Method not allowed for this endpoint")
	}
}

// invalid returns the API's refusal of rec (ignoring the record self), or 0.
func (f *fakeCloudflare) invalid(rec cfRecord, self string) (int, string) {
	if rec.TTL != 1 && rec.TTL < 60 {
		return 9021, "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic."
	}
	if rec.Proxied != nil && *rec.Proxied && rec.Type != "A" && rec.Type != "AAAA" && rec.Type != "CNAME" {
		return 9004, "This record type cannot be proxied."
	}
	for _, o := range f.records {
		if o.ID == self || o.Name != rec.Name {
			continue
		}
		if o.Type == rec.Type && o.Content == rec.Content {
			return 81058, "An identical record already exists."
		}
		if o.Type == "CNAME" || rec.Type == "CNAME" {
			return 81053, "An A, AAAA, or CNAME record with that host already exists."
		}
	}
	return 0, ""
}

func atoiOr(s string, def int) int {
	if n, err := strconv.Atoi(s); err == nil && n > 0 {
		return n
	}
	return def
}

// state returns the fake's records as "name type content ttl [proxied]", sorted.
func (f *fakeCloudflare) state() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.records {
		s := fmt.Sprintf("%s %s %s %d", r.Name, r.Type, r.Content, r.TTL)
		if r.Proxied != nil && *r.Proxied {
			s += " proxied"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func TestCloudflareReconcile(t *testing.T) {
	f, srv := newFakeCloudflare(t,
		cfRecord{Type: "A", Name: "blog.example.org", Content: "192.0.2.1", TTL: 1}, // by hand in the dashboard
		cfRecord{Type: "MX", Name: "example.org", Content: "mx.example.net", TTL: 300},
	)
	p := &Cloudflare{Token: f.token, Zone: "example.org", BaseURL: srv.URL, Client: srv.Client()}
	desired := []Record{
		{Name: "relay.example.org", Type: "A", TTL: 300, Values: []string{"203.0.113.7", "203.0.113.8"}},
		{Name: "www.example.org", Type: "A", TTL: 300, Values: []string{"203.0.113.7"}, Proxied: true},
		{Name: "vault.example.org", Type: "CNAME", TTL: 300, Values: []string{"private-relay.example.org"}},
		{Name: "blog.example.org", Type: "CNAME", TTL: 300, Values: []string{"relay.example.org"}},
	}
	cs := reconcileOnce(t, p, desired, "homelab")
	if diff := cmp.Diff([]string{
		"create relay.example.org A 203.0.113.7, 203.0.113.8",
		"create vault.example.org CNAME private-relay.example.org",
		"create www.example.org A 203.0.113.7 (proxied)",
		"conflict blog.example.org CNAME",
	}, actions(cs)); diff != "" {
		t.Fatalf("first plan (-want +got):\n%s", diff)
	}
	want := []string{
		`a-relay.example.org TXT "heritage=external-dns,external-dns/owner=homelab" 300`,
		`a-www.example.org TXT "heritage=external-dns,external-dns/owner=homelab" 300`,
		"blog.example.org A 192.0.2.1 1",
		`cname-vault.example.org TXT "heritage=external-dns,external-dns/owner=homelab" 300`,
		"example.org MX mx.example.net 300",
		"relay.example.org A 203.0.113.7 300",
		"relay.example.org A 203.0.113.8 300",
		"vault.example.org CNAME private-relay.example.org 300",
		"www.example.org A 203.0.113.7 1 proxied",
	}
	if diff := cmp.Diff(want, f.state()); diff != "" {
		t.Fatalf("zone after the first run (-want +got):\n%s", diff)
	}
	// Listing went through several pages (3 records per page here).
	if cs := reconcileOnce(t, p, desired, "homelab"); len(cs.Changes) != 0 || cs.Unchanged != 3 {
		t.Fatalf("second run: %v, %d unchanged", actions(cs), cs.Unchanged)
	}

	// The relay moves to one address, vault points elsewhere, www goes.
	desired = []Record{
		{Name: "relay.example.org", Type: "A", TTL: 300, Values: []string{"203.0.113.9"}},
		{Name: "vault.example.org", Type: "CNAME", TTL: 300, Values: []string{"relay.example.org"}},
	}
	reconcileOnce(t, p, desired, "homelab")
	want = []string{
		`a-relay.example.org TXT "heritage=external-dns,external-dns/owner=homelab" 300`,
		"blog.example.org A 192.0.2.1 1",
		`cname-vault.example.org TXT "heritage=external-dns,external-dns/owner=homelab" 300`,
		"example.org MX mx.example.net 300",
		"relay.example.org A 203.0.113.9 300",
		"vault.example.org CNAME relay.example.org 300",
	}
	if diff := cmp.Diff(want, f.state()); diff != "" {
		t.Fatalf("zone after the update (-want +got):\n%s", diff)
	}
}

func TestCloudflareEditBetweenPlanAndApply(t *testing.T) {
	ctx := context.Background()
	f, srv := newFakeCloudflare(t)
	p := &Cloudflare{Token: f.token, Zone: "example.org", BaseURL: srv.URL, Client: srv.Client()}
	reconcileOnce(t, p, []Record{{Name: "relay.example.org", Type: "A", TTL: 300, Values: []string{"203.0.113.7"}}}, "homelab")
	cur, err := p.Records(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cs := Plan(cur, []Record{{Name: "relay.example.org", Type: "A", TTL: 300, Values: []string{"203.0.113.8"}}}, "homelab")
	// Someone edits the record in the dashboard.
	f.mu.Lock()
	for i, r := range f.records {
		if r.Name == "relay.example.org" && r.Type == "A" {
			f.records[i].Content = "198.51.100.1"
		}
	}
	f.mu.Unlock()
	if err := p.Apply(ctx, cs.Changes[0]); !errors.Is(err, ErrChanged) {
		t.Fatalf("Apply = %v, want ErrChanged", err)
	}
	if !slices.Contains(f.state(), "relay.example.org A 198.51.100.1 300") {
		t.Errorf("the hand edit was overwritten: %v", f.state())
	}
}

func TestCloudflareAdoptsExternalDNS(t *testing.T) {
	// ExternalDNS writes its TXT contents with the quotes.
	f, srv := newFakeCloudflare(t,
		cfRecord{Type: "A", Name: "relay.example.org", Content: "203.0.113.1", TTL: 1},
		cfRecord{Type: "TXT", Name: "a-relay.example.org", Content: `"heritage=external-dns,external-dns/owner=homelab,external-dns/resource=service/default/relay"`, TTL: 1},
	)
	p := &Cloudflare{Token: f.token, Zone: "example.org", BaseURL: srv.URL, Client: srv.Client()}
	cs := reconcileOnce(t, p, []Record{{Name: "relay.example.org", Type: "A", TTL: 300, Values: []string{"203.0.113.7"}}}, "homelab")
	if diff := cmp.Diff([]string{"update relay.example.org A 203.0.113.7 (was 203.0.113.1)"}, actions(cs)); diff != "" {
		t.Fatalf("plan (-want +got):\n%s", diff)
	}
	if !slices.Contains(f.state(), "relay.example.org A 203.0.113.7 300") {
		t.Errorf("not updated: %v", f.state())
	}
}

func TestCloudflareChallengeTXT(t *testing.T) {
	ctx := context.Background()
	f, srv := newFakeCloudflare(t)
	p := &Cloudflare{Token: f.token, Zone: "example.org", BaseURL: srv.URL, Client: srv.Client()}
	const name = "_acme-challenge.example.org"
	for _, v := range []string{"token-apex", "token-wildcard", "token-apex"} {
		if err := p.SetTXT(ctx, name, v); err != nil {
			t.Fatalf("SetTXT(%s): %v", v, err)
		}
	}
	want := []string{`_acme-challenge.example.org TXT "token-apex" 60`, `_acme-challenge.example.org TXT "token-wildcard" 60`}
	if diff := cmp.Diff(want, f.state()); diff != "" {
		t.Fatalf("after SetTXT (-want +got):\n%s", diff)
	}
	if err := p.DeleteTXT(ctx, name, "token-apex"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want[1:], f.state()); diff != "" {
		t.Fatalf("after DeleteTXT (-want +got):\n%s", diff)
	}
}

func TestCloudflareErrors(t *testing.T) {
	ctx := context.Background()
	f, srv := newFakeCloudflare(t)
	bad := &Cloudflare{Token: "wrong", Zone: "example.org", BaseURL: srv.URL, Client: srv.Client()}
	_, err := bad.Records(ctx)
	if err == nil || !strings.Contains(err.Error(), "HTTP 403: Authentication error (code 10000): check dns.provider.api_token") {
		t.Errorf("wrong token: %v", err)
	}
	other := &Cloudflare{Token: f.token, Zone: "example.net", BaseURL: srv.URL, Client: srv.Client()}
	if _, err := other.Records(ctx); err == nil || !strings.Contains(err.Error(), "no zone example.net is visible to this token") {
		t.Errorf("unknown zone: %v", err)
	}
	srv.Close()
	if _, err := (&Cloudflare{Token: f.token, Zone: "example.org", BaseURL: srv.URL}).Records(ctx); err == nil {
		t.Error("listing from a closed server succeeded")
	}
}

func TestCloudflareTXTContent(t *testing.T) {
	for _, tt := range []struct{ content, value string }{
		{`"abc"`, "abc"},
		{`"a" "b"`, "ab"},
		{`unquoted`, "unquoted"},
		{`"with \"quotes\""`, `with "quotes"`},
		{`"broken`, `"broken`},
	} {
		if got := cfValue(cfRecord{Type: "TXT", Content: tt.content}); got != tt.value {
			t.Errorf("cfValue(%s) = %q, want %q", tt.content, got, tt.value)
		}
	}
	long := strings.Repeat("x", 300)
	if got := cfValue(cfRecord{Type: "TXT", Content: cfContent("TXT", long)}); got != long {
		t.Errorf("a 300-byte value did not come back whole: %d bytes", len(got))
	}
}

func FuzzCloudflareTXT(f *testing.F) {
	f.Add(`"abc"`)
	f.Add(`"a" "b\"c"`)
	f.Fuzz(func(t *testing.T, v string) {
		// Whatever we write comes back as it was.
		if got := cfValue(cfRecord{Type: "TXT", Content: cfContent("TXT", v)}); got != v {
			t.Fatalf("cfValue(cfContent(%q)) = %q", v, got)
		}
	})
}

func TestCloudflareProxiedToggle(t *testing.T) {
	f, srv := newFakeCloudflare(t)
	p := &Cloudflare{Token: f.token, Zone: "example.org", BaseURL: srv.URL, Client: srv.Client()}
	www := Record{Name: "www.example.org", Type: "A", TTL: 300, Values: []string{"203.0.113.7", "203.0.113.8"}}
	reconcileOnce(t, p, []Record{www}, "homelab")
	www.Proxied = true
	cs := reconcileOnce(t, p, []Record{www}, "homelab")
	if diff := cmp.Diff([]string{"update www.example.org A 203.0.113.7, 203.0.113.8 (proxied) (was 203.0.113.7, 203.0.113.8)"}, actions(cs)); diff != "" {
		t.Fatalf("plan (-want +got):\n%s", diff)
	}
	want := []string{
		`a-www.example.org TXT "heritage=external-dns,external-dns/owner=homelab" 300`,
		"www.example.org A 203.0.113.7 1 proxied",
		"www.example.org A 203.0.113.8 1 proxied",
	}
	if diff := cmp.Diff(want, f.state()); diff != "" {
		t.Fatalf("zone (-want +got):\n%s", diff)
	}
	// Proxied records come back with TTL 1 (automatic): in sync, not updated again.
	if cs := reconcileOnce(t, p, []Record{www}, "homelab"); len(cs.Changes) != 0 {
		t.Fatalf("third run: %v", actions(cs))
	}
}

// TestCloudflareFailedCreateLeavesNoOwnership: when the record itself
// cannot be written after its ownership record was, the ownership record is
// taken back; left behind, it would make labgate treat a record someone
// later puts at that name by hand as its own, and overwrite it.
func TestCloudflareFailedCreateLeavesNoOwnership(t *testing.T) {
	ctx := context.Background()
	f, srv := newFakeCloudflare(t)
	p := &Cloudflare{Token: f.token, Zone: "example.org", BaseURL: srv.URL, Client: srv.Client()}
	f.refuse = func(r cfRecord) bool { return r.Type == "A" && r.Content == "203.0.113.8" }
	desired := []Record{{Name: "relay.example.org", Type: "A", TTL: 300, Values: []string{"203.0.113.7", "203.0.113.8"}}}
	cs := Plan(nil, desired, "homelab")
	if err := p.Apply(ctx, cs.Changes[0]); err == nil {
		t.Fatal("Apply succeeded although the API refused a record")
	}
	if got := f.state(); len(got) != 0 {
		t.Errorf("left after the failed create: %v, want nothing", got)
	}
	// A record made by hand at that name afterwards is not labgate's.
	f.refuse = nil
	f.mu.Lock()
	f.add(cfRecord{Type: "A", Name: "relay.example.org", Content: "198.51.100.1", TTL: 300})
	f.mu.Unlock()
	cur, err := p.Records(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cs := Plan(cur, desired, "homelab"); len(cs.Changes) != 0 || len(cs.Conflicts) != 1 {
		t.Errorf("plan after a hand-made record: %v, want a conflict only", actions(cs))
	}
}
