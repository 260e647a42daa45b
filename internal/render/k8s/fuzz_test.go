package k8s

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/labgate/labgate/internal/config"
)

// FuzzRender: any file that parses renders without panicking, either to
// positioned errors or to a YAML stream of objects that each have an
// apiVersion, a kind and a name, the same bytes twice.
func FuzzRender(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	more, _ := filepath.Glob("testdata/seed/*.lab.yaml")
	for _, name := range append(files, more...) {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, false)
	}
	f.Fuzz(func(t *testing.T, data []byte, gatewayAPI bool) {
		cfg, err := config.Parse("lab.yaml", data, config.Options{UnreadSecrets: true, Getenv: func(string) (string, bool) { return "x", true }})
		if err != nil {
			return
		}
		opts := Options{Output: Ingress}
		if gatewayAPI {
			opts.Output = GatewayAPI
		}
		out, err := Render(cfg, opts)
		if err != nil {
			var errs config.Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("Render: %v, want config.Errors", err)
			}
			return
		}
		again, _ := Render(cfg, opts)
		if !bytes.Equal(out, again) {
			t.Fatal("two renders differ")
		}
		dec := yaml.NewDecoder(bytes.NewReader(out))
		for {
			var o struct {
				APIVersion string `yaml:"apiVersion"`
				Kind       string `yaml:"kind"`
				Metadata   struct {
					Name string `yaml:"name"`
				} `yaml:"metadata"`
			}
			if err := dec.Decode(&o); err != nil {
				if err.Error() == "EOF" {
					return
				}
				t.Fatalf("output is not YAML: %v\n%s", err, out)
			}
			if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
				t.Fatalf("an object without apiVersion, kind or name:\n%s", out)
			}
		}
	})
}
