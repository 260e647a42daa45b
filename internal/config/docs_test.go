package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/labgate/labgate/internal/config/internal/docgen"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite docs/config.md from Reference()")

func TestFieldDocsUpToDate(t *testing.T) {
	src, err := os.ReadFile("file.go")
	if err != nil {
		t.Fatal(err)
	}
	want, err := docgen.Generate(src)
	if err != nil {
		t.Fatalf("file.go: %v", err)
	}
	got, err := os.ReadFile("zz_fielddocs.go")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("zz_fielddocs.go is out of date with file.go: run `go generate ./internal/config`\n(-want +got):\n%s", diff)
	}
}

// Every key of the file has documentation, and fieldDocs has nothing else.
func TestEveryKeyIsDocumented(t *testing.T) {
	seen := map[string]bool{}
	var walk func(t reflect.Type)
	walk = func(rt reflect.Type) {
		for rt.Kind() == reflect.Pointer || rt.Kind() == reflect.Slice || rt.Kind() == reflect.Map {
			rt = rt.Elem()
		}
		if rt.Kind() != reflect.Struct || rt == durationType {
			return
		}
		for _, f := range fieldsOf(rt) {
			k := rt.Name() + "." + f.name
			if seen[k] {
				continue
			}
			seen[k] = true
			if fieldDocs[k] == "" {
				t.Errorf("%s (key %q) has no documentation", k, f.key)
			}
			walk(rt.Field(f.index).Type)
		}
	}
	walk(fileType)
	for k := range fieldDocs {
		if !seen[k] {
			t.Errorf("fieldDocs has %s, which is not a key of the file", k)
		}
	}
}

func TestReference(t *testing.T) {
	const path = "../../docs/config.md"
	got := Reference()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v: run `go run ./cmd/labgate docs config > docs/config.md` or `go test ./internal/config -run TestReference -update`", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("docs/config.md differs from Reference(): run `go run ./cmd/labgate docs config > docs/config.md` "+
			"or `go test ./internal/config -run TestReference -update`\n(-docs/config.md +Reference()):\n%s", diff)
	}
	// Every key appears, every link points at a section.
	ref := string(got)
	for _, key := range []string{"`services[].tcp[]`", "`alerts.<name>.matrix`", "`tls.acme`", "| `access_token` |", "Secret: also `access_token_file`",
		"One of: `private`, `public`", "| `interval` | duration | `30s` |", "| `hosts` | list of strings |"} {
		if !strings.Contains(ref, key) {
			t.Errorf("Reference() lacks %s", key)
		}
	}
	anchors := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^## (.*)$`).FindAllStringSubmatch(ref, -1) {
		anchors[anchor(m[1])] = true
	}
	for _, m := range regexp.MustCompile(`\]\(#([^)]*)\)`).FindAllStringSubmatch(ref, -1) {
		if !anchors[m[1]] {
			t.Errorf("link to #%s, which is no heading", m[1])
		}
	}
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema()))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("labgate.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("labgate.json") // also validates against the draft 2020-12 meta-schema
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// yamlToJSON reads YAML the way an editor's schema validator does.
func yamlToJSON(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	j, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestSchema(t *testing.T) {
	if !bytes.Equal(Schema(), Schema()) {
		t.Fatal("Schema() differs between calls")
	}
	if !json.Valid(Schema()) {
		t.Fatal("Schema() is not JSON")
	}
	s := compileSchema(t)
	design, err := os.ReadFile("testdata/design.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		yaml  string
		valid bool
	}{
		{"design example", string(design), true},
		{"minimal", "version: 1\n", true},
		{"unknown key", "version: 1\nservices: [{name: a, host: a, echo: true, bakend: x}]\n", false},
		{"unknown top-level key", "version: 1\ndomian: example.org\n", false},
		{"bad enum", "version: 1\nservices: [{name: a, host: a, echo: true, expose: everyone}]\n", false},
		{"bad enum in a list", "version: 1\nservices: [{name: a, tcp: [{port: 1, backend: 'h:1', proxy_protocol: v3}]}]\n", false},
		{"one string for a list", "version: 1\nservices: [{name: a, hosts: a, backends: 'http://b'}]\n", true},
		{"a list of lists", "version: 1\nservices: [{name: a, hosts: [[a]]}]\n", false},
		{"duration", "version: 1\ngateway: {limits: {idle_timeout: 1h30m, shutdown_grace: 0}}\n", true},
		{"bad duration", "version: 1\ngateway: {limits: {idle_timeout: 30}}\n", false},
		{"string for an integer", "version: one\n", false},
		{"missing required", "services: []\n", false},
		{"missing required in a list", "version: 1\nservices: [{host: a}]\n", false},
		{"secret from a file", "version: 1\nalerts: {m: {matrix: {homeserver: h, room: r, access_token_file: f}}}\n", true},
		{"required secret missing", "version: 1\nalerts: {m: {matrix: {homeserver: h, room: r}}}\n", false},
		{"secret and secret file", "version: 1\ndns: {provider: {type: cloudflare, api_token: a, api_token_file: f}}\n", false},
		{"map of receivers", "version: 1\nalerts: {a: {webhook: {url: u}}, b: {ntfy: {url: u, token: t}}}\n", true},
		{"unknown receiver kind", "version: 1\nalerts: {a: {slack: {url: u}}}\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Validate(yamlToJSON(t, []byte(tt.yaml)))
			if tt.valid && err != nil {
				t.Errorf("schema rejects\n%s\n%v", tt.yaml, err)
			}
			if !tt.valid && err == nil {
				t.Errorf("schema accepts\n%s", tt.yaml)
			}
		})
	}
}

// The schema's duration pattern agrees with the parser.
func TestDurationPattern(t *testing.T) {
	re := regexp.MustCompile(durationPattern)
	for _, s := range []string{"0", "30s", "5m", "1h30m", "1.5h", ".5s", "1.s", "100ms", "10us", "10µs", "3ns", "",
		"30", "-1s", "+1s", "1d", "1 s", "s", "1h-30m", "00s", "0.0s"} {
		_, err := time.ParseDuration(s)
		parses := err == nil && !strings.HasPrefix(s, "-") && !strings.HasPrefix(s, "+")
		if re.MatchString(s) != parses {
			t.Errorf("%q: pattern matches %v, time.ParseDuration accepts %v", s, re.MatchString(s), parses)
		}
	}
}
