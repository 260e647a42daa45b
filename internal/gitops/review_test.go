package gitops

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/labgate/labgate/internal/testgit"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestCredentialsNeverShown: a password in the URL and the configured
// password or token appear neither in the status API, nor in the error,
// nor in the log.
func TestCredentialsNeverShown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there: the fetch fails with the URL in its error
	for _, tc := range []struct {
		name, url, password, token string
	}{
		{"password in the URL", "http://me:hunter2pw@" + addr + "/lab.git", "", ""},
		{"token", "http://" + addr + "/lab.git?t=tok-SECRET-9", "", "tok-SECRET-9"},
		{"password", "http://" + addr + "/lab.git", "pw-SECRET-7", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			s := New(Options{URL: tc.url, Branch: "main", Path: "lab.yaml", Dir: t.TempDir(),
				Username: "me", Password: tc.password, Token: tc.token,
				Apply: (&recorder{}).apply, Log: slog.New(slog.NewTextHandler(&logs, nil))})
			err := s.Sync(context.Background())
			if err == nil {
				t.Fatal("fetched from a closed port")
			}
			st, _ := json.Marshal(s.Status())
			for _, secret := range []string{"hunter2pw", "tok-SECRET-9", "pw-SECRET-7"} {
				for where, text := range map[string]string{"error": err.Error(), "status": string(st), "log": logs.String()} {
					if strings.Contains(text, secret) {
						t.Errorf("the %s shows the credential %q: %s", where, secret, text)
					}
				}
			}
			if !strings.Contains(string(st), addr) {
				t.Errorf("the status no longer names the repository: %s", st)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://me:pw@git.example.org/lab.git": "https://me:xxxxx@git.example.org/lab.git",
		"https://git.example.org/lab.git":       "https://git.example.org/lab.git",
		"git@git.example.org:me/lab.git":        "git@git.example.org:me/lab.git",
		"/srv/git/lab.git":                      "/srv/git/lab.git",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestWebhookWithoutSecretRefusesAll: an empty key is one anyone can sign
// with.
func TestWebhookWithoutSecretRefusesAll(t *testing.T) {
	s := New(Options{Branch: "main"})
	push := `{"ref":"refs/heads/main"}`
	req := httptest.NewRequest("POST", "/hooks/git", strings.NewReader(push))
	req.Header.Set("X-Hub-Signature-256", "sha256="+sign("", push))
	w := httptest.NewRecorder()
	s.Webhook("").ServeHTTP(w, req)
	if w.Code != 403 || len(s.trigger) != 0 {
		t.Fatalf("status %d, triggered %v: a request signed with the empty key was taken", w.Code, len(s.trigger) == 1)
	}
}

// TestTriggerFloodFetchesAtMostEveryFewSeconds: a flood of valid (or
// replayed) webhook requests does not turn into a fetch after fetch.
func TestTriggerFloodFetchesAtMostEveryFewSeconds(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-such-repo.git")
	synctest.Test(t, func(t *testing.T) {
		m := NewMetrics(prometheus.NewRegistry())
		s := New(Options{URL: missing, Branch: "main", Path: "lab.yaml", Interval: time.Hour,
			Dir: filepath.Join(dir, "state"), Apply: (&recorder{}).apply, Metrics: m})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		for range 100 { // ten seconds of requests, ten a second
			s.Trigger()
			synctest.Wait()
			time.Sleep(100 * time.Millisecond)
		}
		synctest.Wait()
		fetches := testutil.ToFloat64(m.failures)
		if fetches < 2 || fetches > 3 {
			t.Errorf("%v fetches in 10 s of webhook requests, want 2 or 3 (one at most every %v)", fetches, minTriggerGap)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

// TestOversizedRevisionRefused: a file or a revision over the limits is
// refused before anything is written to state_dir.
func TestOversizedRevisionRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
	}{
		{"one huge file", map[string]string{"lab.yaml": "one\n", "big.bin": strings.Repeat("x", 2000)}},
		{"many files", map[string]string{"lab.yaml": "one\n", "a": strings.Repeat("x", 600), "b": strings.Repeat("y", 600)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := testgit.New(t)
			f.Commit("big", tc.files)
			f.Push()
			r := &recorder{}
			dir := t.TempDir()
			s := New(Options{URL: f.Bare, Branch: "main", Path: "lab.yaml", Dir: dir, Apply: r.apply,
				MaxFileBytes: 1000, MaxRevisionBytes: 1000})
			err := s.Sync(context.Background())
			if err == nil || !strings.Contains(err.Error(), "bytes") {
				t.Fatalf("Sync = %v, want the revision refused for its size", err)
			}
			if len(r.tried) != 0 {
				t.Error("an oversized revision was offered to Apply")
			}
			ents, _ := os.ReadDir(filepath.Join(dir, "rev"))
			if len(ents) != 0 {
				t.Errorf("state_dir keeps %d entries of a refused revision", len(ents))
			}
		})
	}
}

// TestPushesInQuickSuccessionAreFetchedAtOnce: the pause after a flood
// applies only to fetches that found nothing new.
func TestPushesInQuickSuccessionAreFetchedAtOnce(t *testing.T) {
	f := testgit.New(t)
	dir := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		s := New(Options{URL: f.Bare, Branch: "main", Path: "lab.yaml", Interval: time.Hour, Dir: dir, Apply: r.apply})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		start := time.Now()
		for i := range 3 {
			c := f.Commit("push", map[string]string{"lab.yaml": strings.Repeat("x", i+1) + "\n"})
			f.Push()
			s.Trigger()
			synctest.Wait()
			if r.last() != c {
				t.Fatalf("push %d not applied at once (after %v)", i+1, time.Since(start))
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
