package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that Parse never panics and always answers with either a
// *Config or a non-empty Errors whose every entry names the file.
func FuzzParse(f *testing.F) {
	seeds, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range seeds {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{minimal, secretsFile, "version: 1\nservices: [{name: a, host: a, echo: true}]\n", "a: &a [*a]\n", "version: 1\nlog: ~\n"} {
		f.Add([]byte(s))
	}
	getenv := env("CF_API_TOKEN", "t", "MATRIX_TOKEN", "m", "TOKEN", "x", "HOST", "vault")
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data, Options{Getenv: getenv})
		if err == nil {
			if cfg == nil {
				t.Fatal("Parse returned neither a *Config nor an error")
			}
			return
		}
		if cfg != nil {
			t.Fatal("Parse returned a *Config and an error")
		}
		var errs Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("error %v (%T) is not a non-empty Errors", err, err)
		}
		for _, e := range errs {
			if e.File != "fuzz.yaml" || e.Msg == "" {
				t.Fatalf("error %#v has no file or no message", e)
			}
		}
	})
}
