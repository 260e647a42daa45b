package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const leak = "hunter2-s3cr3t"

// secretsFile sets every secret of the file shapes, from the environment and from files.
const secretsFile = `version: 1
domain: example.org
dns:
  provider: {type: cloudflare, api_token: "${TOKEN}", tsig_secret_file: tsig.key}
alerts:
  m: {matrix: {homeserver: "https://m.example.org", room: "!r:example.org", access_token: "${TOKEN}"}}
  w: {webhook: {url: "https://w.example.org", secret: "${TOKEN}"}}
  n: {ntfy: {url: "https://ntfy.example.org/t", token_file: tsig.key}}
  e: {email: {smtp: "mx.example.org:587", from: a@example.org, to: b@example.org, password: "${TOKEN}"}}
`

func TestSecretsAreRedacted(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tsig.key"), []byte(leak+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(filepath.Join(dir, "lab.yaml"), []byte(secretsFile), Options{Getenv: env("TOKEN", leak)})
	if err != nil {
		t.Fatal(err)
	}
	// The secrets are there for the one place that uses them.
	for _, s := range []Secret{cfg.DNS.Provider.APIToken, cfg.DNS.Provider.TSIGSecret, cfg.Alerts[0].Email.Password,
		cfg.Alerts[1].Matrix.AccessToken, cfg.Alerts[2].Ntfy.Token, cfg.Alerts[3].Webhook.Secret} {
		if s.Value() != leak {
			t.Fatalf("secret = %q, want %q", s.Value(), leak)
		}
	}

	// Everything that holds a secret, directly or through pointers.
	values := map[string]any{
		"*Config": cfg, "Config": *cfg, "DNSProvider": *cfg.DNS.Provider, "Alerts": cfg.Alerts,
		"Email": *cfg.Alerts[0].Email, "Matrix": *cfg.Alerts[1].Matrix, "Ntfy": *cfg.Alerts[2].Ntfy,
		"Webhook": *cfg.Alerts[3].Webhook, "Secret": cfg.DNS.Provider.APIToken, "*Secret": &cfg.DNS.Provider.APIToken,
	}
	outputs := map[string]func(v any) string{
		"%v":  func(v any) string { return fmt.Sprintf("%v", v) },
		"%+v": func(v any) string { return fmt.Sprintf("%+v", v) },
		"%#v": func(v any) string { return fmt.Sprintf("%#v", v) },
		"%s":  func(v any) string { return fmt.Sprintf("%s", v) },
		"%q":  func(v any) string { return fmt.Sprintf("%q", v) },
		"%x":  func(v any) string { return fmt.Sprintf("%x", v) },
		"%d":  func(v any) string { return fmt.Sprintf("%d", v) },
		"json": func(v any) string {
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		},
		"yaml": func(v any) string {
			b, err := yaml.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		},
		"slog JSON": func(v any) string {
			var b bytes.Buffer
			slog.New(slog.NewJSONHandler(&b, nil)).Info("config", "v", v)
			return b.String()
		},
		"slog text": func(v any) string {
			var b bytes.Buffer
			slog.New(slog.NewTextHandler(&b, nil)).Info("config", "v", v)
			return b.String()
		},
	}
	hexLeak := fmt.Sprintf("%x", leak)
	for vname, v := range values {
		for oname, out := range outputs {
			s := out(v)
			if strings.Contains(s, leak) || strings.Contains(s, hexLeak) {
				t.Errorf("%s of %s shows the secret:\n%s", oname, vname, s)
			}
		}
	}
	// The redaction marker is visible where a secret is printed.
	if got := fmt.Sprint(cfg.DNS.Provider.APIToken); got != Redacted {
		t.Errorf("Secret prints as %q, want %q", got, Redacted)
	}
	// Two parses of one file are deeply equal (a reload can skip an unchanged file).
	again, err := Parse(filepath.Join(dir, "lab.yaml"), []byte(secretsFile), Options{Getenv: env("TOKEN", leak)})
	if err != nil || !reflect.DeepEqual(cfg, again) {
		t.Errorf("two parses of one file differ (err %v)", err)
	}
	if got := fmt.Sprint(Secret{}); got != "" {
		t.Errorf("empty Secret prints as %q, want \"\"", got)
	}
}

// Errors about secret fields say what is wrong without quoting the value.
func TestSecretErrorsDoNotQuoteTheValue(t *testing.T) {
	tests := []struct{ name, yaml string }{
		{"set twice", "dns: {provider: {type: cloudflare, api_token: " + leak + ", api_token_file: x}}"},
		{"file set twice", "dns: {provider: {type: cloudflare, api_token_file: x, api_token: " + leak + "}}"},
		{"list", "alerts: {m: {webhook: {url: 'https://w', secret: [" + leak + "]}}}"},
		{"mapping", "alerts: {m: {ntfy: {url: 'https://w', token: {" + leak + ": 1}}}}"},
		{"from env with a bad sibling", "alerts: {m: {matrix: {homeserver: 'ftp://x', room: r, access_token: '${TOKEN}'}}}"},
		{"unknown key beside it", "dns: {provider: {type: rfc2136, tsig_secret: '${TOKEN}', tsig_nmae: k}}"},
		{"wrong provider", "dns: {provider: {type: cloudflar, api_token: " + leak + "}}"},
		{"file name is the secret", "dns: {provider: {type: cloudflare, api_token_file: " + leak + "}}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("lab.yaml", []byte("version: 1\n"+tt.yaml+"\n"), Options{Getenv: env("TOKEN", leak)})
			if err == nil {
				t.Fatal("Parse succeeded, want errors")
			}
			msg := err.Error()
			if tt.name == "file name is the secret" {
				// A file name is not a secret: saying which file is missing is the point.
				if !strings.Contains(msg, "cannot read secret") {
					t.Errorf("error = %s, want cannot read secret", msg)
				}
				return
			}
			if strings.Contains(msg, leak) {
				t.Errorf("error quotes the secret:\n%s", msg)
			}
		})
	}
}
