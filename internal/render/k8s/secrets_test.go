package k8s

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labgate/labgate/internal/config"
)

// TestNoSecretValueRendered: with every secret read (UnreadSecrets off),
// from the environment, from files and as literal values, none of them
// appears in either output.
func TestNoSecretValueRendered(t *testing.T) {
	data, err := os.ReadFile("testdata/lab.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ntfy-token"), []byte("SECRET-FROM-FILE-4\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lab := strings.Replace(string(data), "alerts:\n  phone: { webhook: { url: https://hooks.example.org/phone } }\n", `alerts:
  phone: { webhook: { url: "https://hooks.example.org/${HOOK_PATH}", secret: SECRET-LITERAL-1 } }
  matrix: { matrix: { homeserver: https://matrix.example.org, room: "!abc:example.org", access_token: "${MATRIX_TOKEN}" } }
  ntfy: { ntfy: { url: https://ntfy.sh/lab, token_file: ntfy-token } }
  mail: { email: { smtp: "smtp.example.org:587", from: lab@example.org, to: [me@example.org], username: me, password: SECRET-LITERAL-2 } }
`, 1)
	if lab == string(data) {
		t.Fatal("testdata/lab.yaml changed: its alerts section was not found")
	}
	name := filepath.Join(dir, "lab.yaml")
	if err := os.WriteFile(name, []byte(lab), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CF_API_TOKEN": "SECRET-ENV-CF-3", "MATRIX_TOKEN": "SECRET-ENV-MATRIX-5", "HOOK_PATH": "SECRET-ENV-PATH-6"}
	cfg, err := config.Parse(name, []byte(lab), config.Options{Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []Output{Ingress, GatewayAPI} {
		got := string(render(t, cfg, Options{Output: out}))
		for _, secret := range []string{"SECRET-LITERAL-1", "SECRET-LITERAL-2", "SECRET-ENV-CF-3", "SECRET-FROM-FILE-4", "SECRET-ENV-MATRIX-5", "SECRET-ENV-PATH-6"} {
			if strings.Contains(got, secret) {
				t.Errorf("the %s output holds the secret %s", out, secret)
			}
		}
		if !strings.Contains(got, "kind: ExternalSecret") {
			t.Errorf("the %s output has no ExternalSecret for the DNS token", out)
		}
	}
}
