package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const bootstrapFile = `version: 1
state_dir: /var/lib/labgate
git:
  url: https://git.example.org/me/lab.git
  username: me
  token: ${GIT_TOKEN}
  webhook: { secret: "${HOOK}", listen: "192.168.1.10:9183" }
`

func TestParseGit(t *testing.T) {
	cfg, err := Parse("local.yaml", []byte(bootstrapFile), Options{Getenv: env("GIT_TOKEN", "tok", "HOOK", "hook")})
	if err != nil {
		t.Fatal(err)
	}
	want := &Git{URL: "https://git.example.org/me/lab.git", Branch: "main", Path: "lab.yaml", Interval: time.Minute,
		Username: "me", Token: NewSecret("tok"), Webhook: &GitWebhook{Secret: NewSecret("hook"), Listen: "192.168.1.10:9183"}}
	if diff := cmp.Diff(want, cfg.Git, cmpOpts); diff != "" {
		t.Errorf("git (-want +got):\n%s", diff)
	}

	// The file fetched from git takes state_dir and git from the local file.
	boot := cfg
	for _, tc := range []struct {
		name, file string
		errs       []string
	}{
		{"no state_dir, no git", "version: 1\nservices:\n  - { name: a, host: a.example.org, echo: true }\n", nil},
		{"the same state_dir", "version: 1\nstate_dir: /var/lib/labgate\n", nil},
		{"another state_dir", "version: 1\nstate_dir: ./state\n", []string{`lab.yaml:2:12: state_dir: "lab/state" differs from the local file's state_dir (/var/lib/labgate): leave state_dir out of the file in git`}},
		{"another git", "version: 1\ngit: { url: https://elsewhere.example.org/x.git }\n", []string{"lab.yaml:2:6: git: differs from the git section of the local file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse("lab/lab.yaml", []byte(tc.file), Options{Bootstrap: boot, Getenv: env()})
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if got.StateDir != boot.StateDir || got.Git != boot.Git {
					t.Errorf("state_dir %q, git %+v: want the local file's", got.StateDir, got.Git)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, e := range tc.errs {
				if !strings.Contains(err.Error(), strings.Replace(e, "lab.yaml:", "lab/lab.yaml:", 1)) {
					t.Errorf("error %q\nwant %q", err, e)
				}
			}
		})
	}
}

func TestParseGitErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file, want string
	}{
		{"services in the local file", "version: 1\ngit: { url: https://x.example.org/r.git }\nservices: []\n",
			"l.yaml:3:11: services: with git, services comes from the file in the repository (lab.yaml): keep only version, state_dir, log and git in this file"},
		{"no url", "version: 1\ngit: { branch: main }\n", "git.url: missing (required)"},
		{"bad scheme", "version: 1\ngit: { url: ftp://x/r.git }\n", `git.url: unsupported scheme "ftp"`},
		{"password in the url", "version: 1\ngit: { url: \"https://me:pw@x.example.org/r.git\" }\n", "credentials in the URL would be logged"},
		{"relative path", "version: 1\ngit: { url: lab.git }\n", "is neither a URL"},
		{"branch as ref", "version: 1\ngit: { url: /srv/lab.git, branch: refs/heads/main }\n", "write main, not refs/heads/main"},
		{"path outside", "version: 1\ngit: { url: /srv/lab.git, path: ../x.yaml }\n", "must be a file's path inside the repository"},
		{"interval", "version: 1\ngit: { url: /srv/lab.git, interval: 10ms }\n", "git.interval: at least 1s"},
		{"password and token", "version: 1\ngit: { url: /srv/lab.git, username: u, password: p, token: t }\n", "set password or token, not both"},
		{"password without user", "version: 1\ngit: { url: /srv/lab.git, password: p }\n", "a password needs a username"},
		{"webhook without secret", "version: 1\ngit: { url: /srv/lab.git, webhook: { listen: \":9183\" } }\n", "git.webhook.secret: missing (required)"},
		{"missing ssh key", "version: 1\ngit: { url: git@x:me/lab.git, ssh_key_file: /nonexistent/key }\n", "git.ssh_key_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("l.yaml", []byte(tc.file), Options{Getenv: env()})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v\nwant %q", err, tc.want)
			}
		})
	}
}
