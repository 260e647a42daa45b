package gitops

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/labgate/labgate/internal/testgit"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// recorder is an Apply callback that refuses files containing "bad".
type recorder struct {
	mu      sync.Mutex
	applied []string // commits, in order
	tried   map[string]int
	data    map[string]string
	dirs    map[string][]string
}

func (r *recorder) apply(_ context.Context, rev Revision) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tried == nil {
		r.tried, r.data, r.dirs = map[string]int{}, map[string]string{}, map[string][]string{}
	}
	r.tried[rev.Commit]++
	ents, _ := os.ReadDir(rev.Dir)
	for _, e := range ents {
		r.dirs[rev.Commit] = append(r.dirs[rev.Commit], e.Name())
	}
	if strings.Contains(string(rev.Data), "bad") {
		return errors.New("the file says bad")
	}
	r.applied = append(r.applied, rev.Commit)
	r.data[rev.Commit] = string(rev.Data)
	return nil
}

func (r *recorder) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.applied) == 0 {
		return ""
	}
	return r.applied[len(r.applied)-1]
}

func newSyncer(t *testing.T, f *testgit.Forge, r *recorder, reg prometheus.Registerer, dir string) *Syncer {
	if dir == "" {
		dir = t.TempDir()
	}
	var m *Metrics
	if reg != nil {
		m = NewMetrics(reg)
	}
	return New(Options{URL: f.Bare, Branch: "main", Path: "lab.yaml", Interval: time.Hour, Dir: dir, Apply: r.apply, Metrics: m})
}

func TestSyncAppliesGoodAndRefusesBadOnce(t *testing.T) {
	f := testgit.New(t)
	good := f.Commit("first", map[string]string{"lab.yaml": "version: 1 # good\n", "site/index.html": "hi"})
	f.Push()
	r := &recorder{}
	reg := prometheus.NewRegistry()
	s := newSyncer(t, f, r, reg, "")
	ctx := context.Background()

	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if r.last() != good {
		t.Fatalf("applied %v, want %s", r.applied, good)
	}
	if got := r.dirs[good]; strings.Join(got, ",") != "lab.yaml,site" {
		t.Errorf("revision directory holds %v, want the files beside lab.yaml too", got)
	}
	if st := s.Status(); st.Deployed != good || st.LastError != "" || st.LastSync.IsZero() {
		t.Errorf("status after a good push: %+v", st)
	}

	bad := f.Commit("break it", map[string]string{"lab.yaml": "bad\n"})
	f.Push()
	if err := s.Sync(ctx); err == nil || !strings.Contains(err.Error(), "the file says bad") {
		t.Fatalf("Sync of a bad revision = %v", err)
	}
	st := s.Status()
	if st.Deployed != good || st.Attempted != bad || !strings.Contains(st.LastError, "the file says bad") {
		t.Errorf("status after a bad push: %+v", st)
	}
	// Tried once: later syncs of the same head do not call Apply again.
	for range 3 {
		if err := s.Sync(ctx); !errors.Is(err, errRefusedBefore) {
			t.Fatalf("Sync of a refused head = %v, want errRefusedBefore", err)
		}
	}
	if n := r.tried[bad]; n != 1 {
		t.Errorf("the bad revision was tried %d times, want 1", n)
	}
	if _, err := os.Stat(filepath.Join(s.opts.Dir, "rev", good)); err != nil {
		t.Errorf("the serving revision's files are gone: %v", err)
	}
	if got := testutil.ToFloat64(s.opts.Metrics.failures); got != 1 {
		t.Errorf("labgate_git_sync_failures_total = %v, want 1", got)
	}
	if got := testutil.ToFloat64(s.opts.Metrics.revision.WithLabelValues(good)); got != 1 {
		t.Errorf("labgate_git_revision_info{revision=good} = %v", got)
	}

	fixed := f.Commit("fix it", map[string]string{"lab.yaml": "version: 1 # fixed\n"})
	f.Push()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if r.last() != fixed || s.Status().LastError != "" {
		t.Errorf("after a fix: applied %v, status %+v", r.applied, s.Status())
	}
	if ents, _ := os.ReadDir(filepath.Join(s.opts.Dir, "rev")); len(ents) != 2 {
		t.Errorf("revision directories %v, want the serving one and the one before it (draining)", ents)
	}
	if n := testutil.CollectAndCount(s.opts.Metrics.revision); n != 1 {
		t.Errorf("labgate_git_revision_info has %d series, want only the serving one", n)
	}
}

func TestForcePushIsFollowed(t *testing.T) {
	f := testgit.New(t)
	first := f.Commit("first", map[string]string{"lab.yaml": "one\n"})
	f.Commit("second", map[string]string{"lab.yaml": "two\n"})
	f.Push()
	r := &recorder{}
	s := newSyncer(t, f, r, nil, "")
	ctx := context.Background()
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// Rewrite history: drop "second", commit something else, force-push.
	f.Git(f.Work, "reset", "-q", "--hard", first)
	rewritten := f.Commit("rewritten", map[string]string{"lab.yaml": "three\n"})
	f.Push("--force")
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if r.last() != rewritten || r.data[rewritten] != "three\n" {
		t.Fatalf("after a force-push: applied %v (want %s last)", r.applied, rewritten)
	}
}

func TestMissingFileAndEmptyRepository(t *testing.T) {
	f := testgit.New(t)
	r := &recorder{}
	s := newSyncer(t, f, r, nil, "")
	if err := s.Sync(context.Background()); err == nil {
		t.Fatal("Sync of an empty repository succeeded")
	}
	if st := s.Status(); st.LastError == "" || st.Deployed != "" {
		t.Errorf("status: %+v", st)
	}
	f.Commit("no config", map[string]string{"README": "x"})
	f.Push()
	err := s.Sync(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no file lab.yaml") {
		t.Fatalf("Sync of a commit without lab.yaml = %v", err)
	}
}

func TestResumeServesTheLastRevisionWithoutTheForge(t *testing.T) {
	f := testgit.New(t)
	good := f.Commit("first", map[string]string{"lab.yaml": "version: 1\n"})
	f.Push()
	dir := t.TempDir()
	if err := newSyncer(t, f, &recorder{}, nil, dir).Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(f.Bare) // the forge is gone
	r := &recorder{}
	s := newSyncer(t, f, r, nil, dir)
	if !s.Resume(context.Background()) {
		t.Fatal("Resume found nothing")
	}
	if r.last() != good || s.Status().Deployed != good {
		t.Errorf("resumed %v, status %+v", r.applied, s.Status())
	}
	if err := s.Sync(context.Background()); err == nil {
		t.Error("Sync without the forge succeeded")
	}
	if s.Status().Deployed != good {
		t.Error("a failed fetch changed the deployed revision")
	}
}

func TestRunFetchesOnTrigger(t *testing.T) {
	f := testgit.New(t)
	c := f.Commit("first", map[string]string{"lab.yaml": "version: 1\n"})
	f.Push()
	r := &recorder{}
	s := newSyncer(t, f, r, nil, "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	s.Trigger()
	s.Trigger() // coalesced
	deadline := time.Now().Add(20 * time.Second)
	for r.last() != c && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r.last() != c {
		t.Fatal("Run did not fetch on Trigger")
	}
}

func sign(key, body string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil))
}

func TestWebhook(t *testing.T) {
	s := New(Options{Branch: "main"})
	h := s.Webhook("s3cret")
	push := `{"ref":"refs/heads/main","after":"abc"}`
	other := `{"ref":"refs/heads/feature"}`
	for _, tc := range []struct {
		name    string
		method  string
		body    string
		header  map[string]string
		code    int
		trigger bool
	}{
		{"github push", "POST", push, map[string]string{"X-Hub-Signature-256": "sha256=" + sign("s3cret", push), "X-GitHub-Event": "push"}, 202, true},
		{"gitea push", "POST", push, map[string]string{"X-Gitea-Signature": sign("s3cret", push), "X-Gitea-Event": "push"}, 202, true},
		{"no signature", "POST", push, nil, 401, false},
		{"wrong secret", "POST", push, map[string]string{"X-Hub-Signature-256": "sha256=" + sign("guess", push)}, 403, false},
		{"signature of another body", "POST", push, map[string]string{"X-Gitea-Signature": sign("s3cret", other)}, 403, false},
		{"malformed signature", "POST", push, map[string]string{"X-Hub-Signature-256": "sha256=zz"}, 403, false},
		{"sha1 only", "POST", push, map[string]string{"X-Hub-Signature": "sha1=00"}, 401, false},
		{"other branch", "POST", other, map[string]string{"X-Hub-Signature-256": "sha256=" + sign("s3cret", other)}, 202, false},
		{"ping", "POST", `{"zen":"x"}`, map[string]string{"X-Hub-Signature-256": "sha256=" + sign("s3cret", `{"zen":"x"}`), "X-GitHub-Event": "ping"}, 200, false},
		{"GET", "GET", "", nil, 405, false},
		{"too large", "POST", strings.Repeat("x", maxWebhookBody+1), map[string]string{"X-Hub-Signature-256": "sha256=00"}, 413, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for len(s.trigger) > 0 {
				<-s.trigger
			}
			req := httptest.NewRequest(tc.method, "/hooks/git", strings.NewReader(tc.body))
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tc.code {
				t.Errorf("status %d (%s), want %d", w.Code, strings.TrimSpace(w.Body.String()), tc.code)
			}
			if got := len(s.trigger) == 1; got != tc.trigger {
				t.Errorf("triggered = %v, want %v", got, tc.trigger)
			}
		})
	}
}

// TestRunFetchesOnTheInterval: with fake time, a push is picked up within
// the interval and its jitter (±10%), not before the earliest moment.
func TestRunFetchesOnTheInterval(t *testing.T) {
	f := testgit.New(t)
	first := f.Commit("first", map[string]string{"lab.yaml": "one\n"})
	f.Push()
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		s := New(Options{URL: f.Bare, Branch: "main", Path: "lab.yaml", Interval: time.Minute, Dir: dir, Apply: r.apply})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		time.Sleep(53 * time.Second) // before the earliest tick (54 s)
		synctest.Wait()
		if r.last() != "" {
			t.Fatal("fetched before the interval")
		}
		time.Sleep(14 * time.Second) // past the latest tick (66 s)
		synctest.Wait()
		if r.last() != first {
			t.Fatalf("not fetched after the interval: %v", r.applied)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// TestHTTPCredentials fetches over smart HTTP from git's own http-backend
// (as forges serve it) behind basic auth, with a token and with a password.
func TestHTTPCredentials(t *testing.T) {
	backend := "/usr/lib/git-core/git-http-backend"
	if _, err := os.Stat(backend); err != nil {
		t.Skip("git-http-backend not installed")
	}
	f := testgit.New(t)
	c := f.Commit("first", map[string]string{"lab.yaml": "one\n"})
	f.Push()
	cgiHandler := &cgi.Handler{Path: backend, Root: "/",
		Env: []string{"GIT_PROJECT_ROOT=" + filepath.Dir(f.Bare), "GIT_HTTP_EXPORT_ALL=1"}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || !(user == "me" && pass == "pw" || pass == "tok") {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		cgiHandler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	url := srv.URL + "/lab.git"
	for _, tc := range []struct {
		name                      string
		username, password, token string
		ok                        bool
	}{
		{"token", "", "", "tok", true},
		{"username and password", "me", "pw", "", true},
		{"wrong password", "me", "guess", "", false},
		{"no credentials", "", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{}
			s := New(Options{URL: url, Branch: "main", Path: "lab.yaml", Dir: t.TempDir(), Apply: r.apply,
				Username: tc.username, Password: tc.password, Token: tc.token})
			err := s.Sync(context.Background())
			if tc.ok && (err != nil || r.last() != c) {
				t.Fatalf("Sync = %v, applied %v", err, r.applied)
			}
			if !tc.ok {
				if err == nil {
					t.Fatal("fetched without valid credentials")
				}
				if st := s.Status(); !strings.Contains(st.LastError, "authentication required") {
					t.Errorf("last error %q, want it to say authentication is required", st.LastError)
				}
			}
		})
	}
}
