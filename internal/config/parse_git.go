package config

import (
	"net/url"
	"path"
	"reflect"
	"strings"
	"time"
)

// bootstrapOnly are the top-level keys a file with a git section may hold:
// everything else comes from the repository.
var bootstrapOnly = map[string]bool{"version": true, "state_dir": true, "log": true, "git": true}

// git builds the git section and checks how the file fits a git-followed
// setup: the local file (bootstrap == nil) holds only bootstrapOnly keys; a
// fetched file takes state_dir and git from the local one.
func (b *builder) git(c *Config, f *fileGit, bootstrap *Config) {
	if f != nil {
		c.Git = b.gitSection(f)
	}
	if bootstrap != nil {
		if bootstrap.Git == nil {
			b.fail("", "the bootstrap config has no git section")
			return
		}
		if _, set := b.pos["state_dir"]; set && c.StateDir != bootstrap.StateDir {
			b.fail("state_dir", "%q differs from the local file's state_dir (%s): leave state_dir out of the file in git", c.StateDir, bootstrap.StateDir)
		}
		if f != nil && !reflect.DeepEqual(c.Git, bootstrap.Git) {
			b.fail("git", "differs from the git section of the local file: leave git out of the file in git, or keep it identical (a change of git takes a change of the local file and a restart)")
		}
		c.StateDir, c.Git = bootstrap.StateDir, bootstrap.Git
		return
	}
	if f == nil {
		return
	}
	var extra []string
	for p := range b.pos {
		if p != "" && !strings.ContainsAny(p, ".[") && !bootstrapOnly[p] {
			extra = append(extra, p)
		}
	}
	for _, p := range extra {
		b.fail(p, "with git, %s comes from the file in the repository (%s): keep only version, state_dir, log and git in this file", p, c.Git.Path)
	}
}

func (b *builder) gitSection(f *fileGit) *Git {
	g := &Git{URL: f.URL, Branch: f.Branch, Path: f.Path, Interval: time.Duration(f.Interval),
		Username: f.Username, Password: NewSecret(f.Password), Token: NewSecret(f.Token)}
	if f.SSHKeyFile != "" {
		g.SSHKeyFile = b.existingFile("git.ssh_key_file", f.SSHKeyFile)
	}
	if f.AgeKeyFile != "" {
		g.AgeKeyFile = b.existingFile("git.age_key_file", f.AgeKeyFile)
	}
	if scheme, _, ok := strings.Cut(f.URL, "://"); ok {
		u, err := url.Parse(f.URL)
		switch {
		case err != nil:
			b.fail("git.url", "%q is not a URL", f.URL)
		case scheme != "https" && scheme != "http" && scheme != "ssh" && scheme != "git" && scheme != "file":
			b.fail("git.url", "unsupported scheme %q (want https, http, ssh, git or file)", scheme)
		case u.User != nil && u.User.String() != "" && (scheme == "http" || scheme == "https"):
			if _, hasPw := u.User.Password(); hasPw {
				b.fail("git.url", "credentials in the URL would be logged: set username and password (or token) instead")
			}
		}
	} else if f.URL != "" && !strings.Contains(f.URL, ":") && !strings.HasPrefix(f.URL, "/") {
		b.fail("git.url", "%q is neither a URL (https://host/repo.git), host:path (git@host:me/lab.git) nor an absolute path", f.URL)
	}
	if g.Branch == "" || strings.ContainsAny(g.Branch, " ~^:?*[\\") || strings.HasPrefix(g.Branch, "refs/") {
		b.fail("git.branch", "%q is not a branch name (write main, not refs/heads/main)", g.Branch)
	}
	if p := path.Clean(f.Path); f.Path == "" || strings.HasPrefix(f.Path, "/") || p == ".." || strings.HasPrefix(p, "../") || p == "." {
		b.fail("git.path", "%q must be a file's path inside the repository, like lab.yaml or homelab/lab.yaml", f.Path)
	} else {
		g.Path = p
	}
	if g.Interval < time.Second {
		b.fail("git.interval", "at least 1s")
	}
	if g.Password.IsSet() && g.Token.IsSet() {
		b.fail("git.token", "set password or token, not both")
	}
	if g.Password.IsSet() && g.Username == "" {
		b.fail("git.username", "a password needs a username")
	}
	if w := f.Webhook; w != nil {
		g.Webhook = &GitWebhook{Secret: NewSecret(w.Secret)}
		if w.Listen != "" {
			g.Webhook.Listen = b.hostPort("git.webhook.listen", w.Listen)
		}
	}
	return g
}
