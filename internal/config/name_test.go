package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// A revision fetched from git is parsed from its copy in state_dir; its
// errors name the file, and the files beside it, as they are in the
// repository (Options.Name), while Config.Path stays the file read.
func TestParseName(t *testing.T) {
	copyDir := filepath.Join(t.TempDir(), "revisions", "0123abcd")
	file := filepath.Join(copyDir, "homelab", "lab.yaml")
	name := filepath.Join("homelab", "lab.yaml")

	src := minimal + "dns:\n  provider: {type: cloudflare, api_token_file: token}\nlog: {level: loud}\n"
	_, err := Parse(file, []byte(src), Options{Name: name})
	if err == nil {
		t.Fatal("Parse: no error; want the missing token file and the bad level")
	}
	got := err.Error()
	for _, want := range []string{
		name + ":3:",
		"cannot read secret: " + filepath.Join("homelab", "token") + ": no such file",
		name + ":4:",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Parse error:\n%s\nwant it to contain %q", got, want)
		}
	}
	if strings.Contains(got, copyDir) {
		t.Errorf("Parse error names the copy in state_dir:\n%s", got)
	}

	cfg, err := Parse(file, []byte(minimal), Options{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Path != file {
		t.Errorf("Path = %q, want the file read, %q", cfg.Path, file)
	}
	if e := cfg.Errorf("domain", "checked after parsing"); e.File != name {
		t.Errorf("Errorf names %q, want %q", e.File, name)
	}
}
