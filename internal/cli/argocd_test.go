package cli

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"go.yaml.in/yaml/v3"
)

// cmpPlugin is the part of Argo CD's ConfigManagementPlugin (PluginConfig in
// argo-cd v3.2.0's cmpserver/plugin/config.go) that deploy/argocd/plugin.yaml
// uses, decoded strictly: a misspelt key fails.
type cmpPlugin struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Generate struct {
			Command []string `yaml:"command"`
			Args    []string `yaml:"args"`
		} `yaml:"generate"`
		Discover struct {
			FileName string `yaml:"fileName"`
		} `yaml:"discover"`
		Parameters struct {
			Static []struct {
				Name    string `yaml:"name"`
				Title   string `yaml:"title"`
				Tooltip string `yaml:"tooltip"`
				String  string `yaml:"string"`
			} `yaml:"static"`
		} `yaml:"parameters"`
		PreserveFileMode bool `yaml:"preserveFileMode"`
	} `yaml:"spec"`
}

// TestArgoCDPlugin runs deploy/argocd/plugin.yaml the way Argo CD's
// argocd-cmp-server does (discover, then generate in the application's
// directory with the build environment), with this labgate on PATH: see
// testdata/argocd.
func TestArgoCDPlugin(t *testing.T) {
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir: "testdata/argocd",
		Setup: func(env *testscript.Env) error {
			env.Setenv("REPO", repo)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// cmp-generate PLUGIN APPDIR: discover and generate as argocd-cmp-server does.
			"cmp-generate": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: cmp-generate plugin.yaml appdir")
				}
				dec := yaml.NewDecoder(bytes.NewReader([]byte(ts.ReadFile(args[0]))))
				dec.KnownFields(true)
				var p cmpPlugin
				ts.Check(dec.Decode(&p))
				if p.APIVersion != "argoproj.io/v1alpha1" || p.Kind != "ConfigManagementPlugin" || p.Metadata.Name != "labgate" {
					ts.Fatalf("not the labgate ConfigManagementPlugin: %s %s %s", p.APIVersion, p.Kind, p.Metadata.Name)
				}
				dir := ts.MkAbs(args[1])
				matches, err := filepath.Glob(filepath.Join(dir, p.Spec.Discover.FileName))
				ts.Check(err)
				if len(matches) == 0 {
					ts.Fatalf("discover.fileName %q matches nothing in %s", p.Spec.Discover.FileName, dir)
				}
				cmd := append(append([]string{}, p.Spec.Generate.Command...), p.Spec.Generate.Args...)
				ts.Setenv("PWD", dir)
				err = ts.Exec(cmd[0], cmd[1:]...)
				if neg != (err != nil) {
					ts.Fatalf("generate: %v (want failure: %v)", err, neg)
				}
			},
		},
	})
}
