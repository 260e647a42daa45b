package daemon

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/testgit"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/gitops"
	"github.com/labgate/labgate/internal/testpeer"
)

// gitRepo is the forge a lab follows: its lab.yaml is the whole config.
type gitRepo struct{ *testgit.Forge }

func newGitRepo(t *testing.T) *gitRepo { return &gitRepo{testgit.New(t)} }

// push commits lab.yaml with content and pushes it (force: a rewrite).
func (r *gitRepo) push(msg, content string, force bool) string {
	hash := r.Commit(msg, map[string]string{"lab.yaml": content})
	if force {
		r.Push("--force")
	} else {
		r.Push()
	}
	return hash
}

// gitLabConfig is labConfig as it lives in git: state_dir comes from the local file.
func gitLabConfig(l *lab, extra string) string {
	c := strings.Replace(labConfig, "state_dir: ./state\n", "", 1)
	return fmt.Sprintf(c, l.backend["www"].URL, l.backend["vault"].URL) + extra
}

// startGitLab starts serve with a local file that follows repo; first
// pushes the first revision (it gets the lab, for the backends' URLs).
func startGitLab(t *testing.T, repo *gitRepo, first func(*lab)) *lab {
	t.Helper()
	return startGitLabWith(t, repo, "", first)
}

// startGitLabWith is startGitLab with more keys in the git section.
func startGitLabWith(t *testing.T, repo *gitRepo, extraGit string, first func(*lab)) *lab {
	t.Helper()
	l := &lab{t: t, dir: t.TempDir(), logs: &testpeer.Buffer{}, backend: map[string]*httptest.Server{}}
	l.backend["www"] = newBackend(t, "www")
	l.backend["vault"] = newBackend(t, "vault")
	first(l)
	if !strings.Contains(extraGit, "webhook:") {
		extraGit = "  webhook: { secret: s3cret }\n" + extraGit
	}
	l.file = filepath.Join(l.dir, "local.yaml")
	l.write(fmt.Sprintf(`version: 1
state_dir: ./state
log: { level: debug }
git:
  url: %s
  interval: 1h
%s`, repo.Bare, extraGit))
	l.run(Options{
		Load:   func() (*config.Config, error) { return config.Load(l.file, config.Options{}) },
		Watch:  l.file,
		Stderr: l.logs,
	}, 20*time.Second)
	t.Cleanup(l.stop)
	l.trustInternalCA()
	return l
}

// hook posts a push event for branch to the webhook, signed with key.
func (l *lab) hook(key, branch string) int {
	l.t.Helper()
	body := fmt.Sprintf(`{"ref":"refs/heads/%s"}`, branch)
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(body))
	req, _ := http.NewRequest("POST", "http://"+l.addr(admin)+"/hooks/git", strings.NewReader(body))
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
	req.Header.Set("X-GitHub-Event", "push")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		l.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (l *lab) gitStatus() gitops.Status {
	l.t.Helper()
	resp, err := http.Get("http://" + l.addr(admin) + "/api/git")
	if err != nil {
		l.t.Fatal(err)
	}
	defer resp.Body.Close()
	var st gitops.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		l.t.Fatal(err)
	}
	return st
}

func TestGitOps(t *testing.T) {
	repo := newGitRepo(t)
	var first string
	l := startGitLab(t, repo, func(l *lab) { first = repo.push("first", gitLabConfig(l, ""), false) })
	priv := l.client(l.addr(privHTTPS), "", "")
	status := func(host string) int {
		code, _, _ := get(t, priv, "https://"+host+"/")
		return code
	}
	if code, s, body := get(t, priv, "https://vault.lab.test/"); code != 200 || s.Service != "vault" {
		t.Fatalf("first revision does not serve: %d %s", code, body)
	}
	if st := l.gitStatus(); st.Deployed != first {
		t.Fatalf("status %+v, want %s deployed", st, first)
	}

	// A good push, announced by the webhook, is applied.
	good := repo.push("add echo", gitLabConfig(l, "  - { name: hello, host: hello, echo: true }\n"), false)
	if code := l.hook("s3cret", "main"); code != http.StatusAccepted {
		t.Fatalf("webhook answered %d", code)
	}
	waitFor(t, "the pushed service", func() bool { return status("hello.lab.test") == 200 })
	if st := l.gitStatus(); st.Deployed != good || st.LastError != "" {
		t.Errorf("status after a good push: %+v", st)
	}

	// A webhook with the wrong signature is refused and fetches nothing.
	bad := repo.push("break it", "version: 1\nservices:\n  - name: Bad Name\n    backend: htp://x\n", false)
	if code := l.hook("guess", "main"); code != http.StatusForbidden {
		t.Errorf("webhook with a wrong signature answered %d, want 403", code)
	}
	if !strings.Contains(l.logs.String(), "wrong signature") {
		t.Error("a refused webhook is not logged")
	}
	if st := l.gitStatus(); st.Attempted != good {
		t.Errorf("a refused webhook fetched: %+v", st)
	}
	// A push to another branch is ignored.
	if code := l.hook("s3cret", "feature"); code != http.StatusAccepted {
		t.Errorf("webhook for another branch answered %d", code)
	}

	// A bad push is refused; the old revision keeps serving.
	if code := l.hook("s3cret", "main"); code != http.StatusAccepted {
		t.Fatalf("webhook answered %d", code)
	}
	waitFor(t, "the bad revision to be attempted", func() bool { st := l.gitStatus(); return st.Attempted == bad && st.LastError != "" })
	st := l.gitStatus()
	if st.Deployed != good || !strings.Contains(st.LastError, "services[0].name") {
		t.Errorf("status after a bad push: %+v", st)
	}
	if !strings.Contains(st.LastError, " refused: lab.yaml:3:") {
		t.Errorf("the error names the revision's copy, not the file in the repository: %q", st.LastError)
	}
	if status("hello.lab.test") != 200 || status("vault.lab.test") != 200 {
		t.Error("the previous revision stopped serving after a bad push")
	}
	// The status page names the commit that serves.
	_, _, body := fetchStatus(t, &http.Client{Timeout: 5 * time.Second}, "http://"+l.addr(admin)+"/api/status")
	if !strings.Contains(body, fmt.Sprintf(`"revision": %q`, good[:12])) {
		t.Errorf("the status API does not name the deployed commit %s:\n%.300s", good[:12], body)
	}
	m := scrape(t, l.addr(admin))
	for _, want := range []string{
		fmt.Sprintf(`labgate_git_revision_info{revision="%s"} 1`, good),
		"labgate_git_sync_failures_total 1",
		"labgate_config_last_reload_successful 0",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, grep(m, "labgate_git"))
		}
	}
	// Tried once: another trigger does not try the bad revision again.
	gens := l.d.generation()
	l.hook("s3cret", "main")
	waitFor(t, "a fetch that skips the refused head", func() bool {
		return strings.Contains(l.logs.String(), "git head was refused before")
	})
	if n := strings.Count(l.logs.String(), "revision="+bad[:12]+" subject="); n != 1 {
		t.Errorf("the bad revision was applied %d times, want once", n)
	}
	if l.d.generation() != gens {
		t.Error("a refused revision changed the generation")
	}

	// A force-push that drops the bad commit is followed.
	repo.Git(repo.Work, "reset", "-q", "--hard", good)
	rewritten := repo.push("rename", gitLabConfig(l, "  - { name: hi, host: hi, echo: true }\n"), true)
	l.hook("s3cret", "main")
	waitFor(t, "the force-pushed revision", func() bool { return status("hi.lab.test") == 200 })
	if st := l.gitStatus(); st.Deployed != rewritten || st.LastError != "" {
		t.Errorf("status after a force-push: %+v", st)
	}
	if code := status("hello.lab.test"); code == 200 {
		t.Error("hello still served after the force-push removed it")
	}
}

func TestGitOpsRestartServesWithoutTheForge(t *testing.T) {
	repo := newGitRepo(t)
	var first string
	l := startGitLab(t, repo, func(l *lab) { first = repo.push("first", gitLabConfig(l, ""), false) })
	l.stop()
	os.RemoveAll(repo.Bare)
	// Start again from the same local file and state_dir.
	l.run(Options{
		Load:   func() (*config.Config, error) { return config.Load(l.file, config.Options{}) },
		Stderr: l.logs,
	}, 20*time.Second)
	if code, _, body := get(t, l.client(l.addr(privHTTPS), "", ""), "https://vault.lab.test/"); code != 200 {
		t.Fatalf("after a restart without the forge: %d %s", code, body)
	}
	if st := l.gitStatus(); st.Deployed != first {
		t.Errorf("status %+v", st)
	}
}

// A clone found damaged at start is told once, as what it is: the problem
// of this run's copy is not first taken for one an earlier run left.
func TestGitOpsDamagedCloneToldOnce(t *testing.T) {
	repo := newGitRepo(t)
	l := startGitLab(t, repo, func(l *lab) { repo.push("first", gitLabConfig(l, ""), false) })
	l.stop()
	if err := os.WriteFile(filepath.Join(l.dir, "state", "git", "repo.git", "HEAD"), []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l.run(Options{
		Load:   func() (*config.Config, error) { return config.Load(l.file, config.Options{}) },
		Stderr: l.logs,
	}, 20*time.Second)
	logs := l.logs.String()
	if !strings.Contains(logs, "Git state was damaged") {
		t.Fatalf("the damaged clone is not told:\n%s", logs)
	}
	if strings.Contains(logs, "An earlier run of labgate found it damaged") {
		t.Errorf("the clone damaged in this run is told as an earlier run's:\n%s", logs)
	}
}

// TestGitOpsSecretsInGit follows a repository whose config has its secrets
// encrypted by the sops CLI, decrypted with git.age_key_file; a tampered
// revision is refused and the previous one keeps serving.
func TestGitOpsSecretsInGit(t *testing.T) {
	bin := testpeer.NeedTool(t, "sops")
	key, err := filepath.Abs("../sops/testdata/key.txt")
	if err != nil {
		t.Fatal(err)
	}
	keyText, _ := os.ReadFile(key)
	recipient := strings.Fields(strings.SplitAfter(string(keyText), "public key: ")[1])[0]
	encrypt := func(plain string) string {
		t.Helper()
		cmd := exec.Command(bin, "encrypt", "--age", recipient, "--encrypted-regex", "^(secret|token)$",
			"--input-type", "yaml", "--output-type", "yaml", "/dev/stdin")
		cmd.Stdin = strings.NewReader(plain)
		cmd.Env = append(os.Environ(), "SOPS_AGE_KEY_FILE="+key)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("sops encrypt: %v", err)
		}
		return string(out)
	}
	secrets := "alerts:\n  ops: { webhook: { url: \"https://hooks.example.org/x\", secret: hmac-s3cret } }\n"
	repo := newGitRepo(t)
	var first, enc string
	l := startGitLabWith(t, repo, "  age_key_file: "+key+"\n", func(l *lab) {
		enc = encrypt(secrets + gitLabConfig(l, ""))
		first = repo.push("encrypted", enc, false)
	})
	if strings.Contains(enc, "hmac-s3cret") || !strings.Contains(enc, "ENC[AES256_GCM") {
		t.Fatalf("the file in git is not encrypted:\n%s", enc)
	}
	if got := l.d.config().Alerts[0].Webhook.Secret.Value(); got != "hmac-s3cret" {
		t.Errorf("secret = %q after decryption", got)
	}
	if code, _, _ := get(t, l.client(l.addr(privHTTPS), "", ""), "https://vault.lab.test/"); code != 200 {
		t.Fatalf("the encrypted revision does not serve: %d", code)
	}
	// Someone changes a readable value without sops: the MAC no longer matches.
	tampered := strings.Replace(enc, "https://hooks.example.org/x", "https://evil.example.org/x", 1)
	bad := repo.push("tampered", tampered, false)
	l.hook("s3cret", "main")
	waitFor(t, "the tampered revision to be attempted", func() bool { st := l.gitStatus(); return st.Attempted == bad && st.LastError != "" })
	st := l.gitStatus()
	if st.Deployed != first || !strings.Contains(st.LastError, "MAC mismatch") {
		t.Errorf("status after a tampered push: %+v", st)
	}
	if code, _, _ := get(t, l.client(l.addr(privHTTPS), "", ""), "https://vault.lab.test/"); code != 200 {
		t.Errorf("the previous revision stopped serving: %d", code)
	}
}

// TestGitOpsWebhookOnItsOwnListener serves the webhook on git.webhook.listen,
// and nothing else there; the admin address then has no /hooks/git.
func TestGitOpsWebhookOnItsOwnListener(t *testing.T) {
	repo := newGitRepo(t)
	hookAddr := net.JoinHostPort("127.0.0.1", testpeer.FreePort(t, "127.0.0.1"))
	l := startGitLabWith(t, repo, "  webhook: { secret: own, listen: \""+hookAddr+"\" }\n", func(l *lab) {
		repo.push("first", gitLabConfig(l, ""), false)
	})
	post := func(url, key string) int {
		body := `{"ref":"refs/heads/main"}`
		m := hmac.New(sha256.New, []byte(key))
		m.Write([]byte(body))
		req, _ := http.NewRequest("POST", url, strings.NewReader(body))
		req.Header.Set("X-Gitea-Signature", hex.EncodeToString(m.Sum(nil)))
		req.Header.Set("X-Gitea-Event", "push")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	good := repo.push("add echo", gitLabConfig(l, "  - { name: hello, host: hello, echo: true }\n"), false)
	if code := post("http://"+hookAddr+"/hooks/git", "wrong"); code != http.StatusForbidden {
		t.Errorf("wrong signature on the webhook listener: %d", code)
	}
	if code := post("http://"+l.addr(admin)+"/hooks/git", "own"); code != http.StatusNotFound {
		t.Errorf("the admin address answers the webhook with %d, want 404 (it has its own listener)", code)
	}
	if code := post("http://"+hookAddr+"/metrics", "own"); code != http.StatusNotFound {
		t.Errorf("the webhook listener serves /metrics: %d", code)
	}
	if code := post("http://"+hookAddr+"/hooks/git", "own"); code != http.StatusAccepted {
		t.Fatalf("webhook listener answered %d", code)
	}
	waitFor(t, "the pushed revision", func() bool { return l.gitStatus().Deployed == good })
}

// TestGitOpsFirstRevisionRefused: with nothing served before, a bad first
// revision or an unreachable forge stops serve with the reason.
func TestGitOpsFirstRevisionRefused(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		setup      func(*gitRepo)
	}{
		{"bad config", `services[0].name: "Bad Name" is not a valid name`, func(r *gitRepo) {
			r.push("bad", "version: 1\nservices:\n  - { name: Bad Name, host: x.example.org, echo: true }\n", false)
		}},
		{"no forge", "nothing to serve from", func(r *gitRepo) { os.RemoveAll(r.Bare) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := newGitRepo(t)
			tc.setup(repo)
			dir := t.TempDir()
			file := filepath.Join(dir, "local.yaml")
			os.WriteFile(file, []byte("version: 1\nstate_dir: ./state\ngit: { url: "+repo.Bare+" }\n"), 0o644)
			logs := &testpeer.Buffer{}
			d := New(Options{Load: func() (*config.Config, error) { return config.Load(file, config.Options{}) }, Stderr: logs})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := d.Run(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run = %v, want an error saying %q\n%s", err, tc.want, logs)
			}
			if strings.Contains(logs.String(), "keeps serving") || strings.Contains(logs.String(), "still serving") {
				t.Errorf("logs claim something serves:\n%s", logs)
			}
		})
	}
}

// Following git, SIGHUP after restoring the internal CA serves HTTPS again,
// as the CA's alert says, even when the forge has nothing new.
func TestGitOpsSIGHUPRetriesRestoredCA(t *testing.T) {
	repo := newGitRepo(t)
	l := startGitLab(t, repo, func(l *lab) { repo.push("first", gitLabConfig(l, ""), false) })
	l.stop()
	key := filepath.Join(l.dir, "state", "ca", "root.key")
	good, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, good[:len(good)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	l.run(Options{
		Load:   func() (*config.Config, error) { return config.Load(l.file, config.Options{}) },
		Stderr: l.logs,
	}, 20*time.Second)
	https := func() error {
		resp, err := l.client(l.addr(privHTTPS), "", "").Get("https://vault.lab.test/")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if https() == nil {
		t.Fatal("HTTPS served with a damaged CA")
	}
	if err := os.WriteFile(key, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "HTTPS after the restore and SIGHUP", func() bool { return https() == nil })
}
