// Package testgit gives tests a real git forge: a bare repository and a
// working clone that pushes to it, driven with the git CLI as a user would.
package testgit

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Forge is a bare repository (Bare, what labgate clones) and a working
// clone of it (Work) on branch main.
type Forge struct {
	t    testing.TB
	Bare string
	Work string
}

// New makes an empty forge in a temporary directory; it skips the test when
// git is not installed.
func New(t testing.TB) *Forge {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	dir := t.TempDir()
	f := &Forge{t: t, Bare: filepath.Join(dir, "lab.git"), Work: filepath.Join(dir, "work")}
	f.Git(dir, "init", "-q", "--bare", "-b", "main", f.Bare)
	f.Git(dir, "init", "-q", "-b", "main", f.Work)
	f.Git(f.Work, "remote", "add", "origin", f.Bare)
	return f
}

// Git runs git in dir with a fixed identity and no user or system
// configuration, failing the test on error; it returns the trimmed output.
func (f *Forge) Git(dir string, args ...string) string {
	f.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=lab", "GIT_AUTHOR_EMAIL=lab@example.org",
		"GIT_COMMITTER_NAME=lab", "GIT_COMMITTER_EMAIL=lab@example.org", "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		f.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// Commit writes files (name -> content) into the clone and commits them;
// it returns the commit's hash.
func (f *Forge) Commit(msg string, files map[string]string) string {
	f.t.Helper()
	for name, content := range files {
		p := filepath.Join(f.Work, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			f.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
	f.Git(f.Work, "add", "-A")
	f.Git(f.Work, "commit", "-q", "-m", msg)
	return f.Git(f.Work, "rev-parse", "HEAD")
}

// Push pushes main to the forge; args are more flags (--force).
func (f *Forge) Push(args ...string) {
	f.t.Helper()
	f.Git(f.Work, append([]string{"push", "-q", "origin", "main"}, args...)...)
}
