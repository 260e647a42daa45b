package examples

import (
	"path/filepath"
	"testing"

	"github.com/labgate/labgate/internal/config"
)

// Every example file is a valid config.
func TestExamplesParse(t *testing.T) {
	files, _ := filepath.Glob("*.yaml")
	if len(files) == 0 {
		t.Fatal("no examples found")
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			if _, err := config.Load(f, config.Options{Getenv: func(string) (string, bool) { return "x", true }}); err != nil {
				t.Errorf("%v", err)
			}
		})
	}
}

// The embedded quickstart parses under the name serve gives it and shows
// both paths.
func TestQuickstartEmbedded(t *testing.T) {
	cfg, err := config.Parse("quickstart.yaml", Quickstart, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Gateway.Public == nil || cfg.Gateway.Private == nil || len(cfg.Services) < 2 {
		t.Errorf("the quickstart should show a public and a private path: %+v", cfg.Gateway)
	}
}
