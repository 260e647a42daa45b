package k8s

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/labgate/labgate/internal/config"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func load(t *testing.T, name string) *config.Config {
	t.Helper()
	cfg, err := config.Load(name, config.Options{UnreadSecrets: true})
	if err != nil {
		t.Fatalf("Load(%s): %v", name, err)
	}
	return cfg
}

func render(t *testing.T, cfg *config.Config, opts Options) []byte {
	t.Helper()
	out, err := Render(cfg, opts)
	if err != nil {
		t.Fatalf("Render(%s, %+v): %v", cfg.Path, opts, err)
	}
	return out
}

// golden compares got with testdata/golden/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs from the rendered manifests (-golden +got; go test -update rewrites it):\n%s", path, diff)
	}
}

// TestGolden renders every example file in both outputs. The golden files are
// what the validate module decodes into the official types and validates.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "testdata/seed/longhorn-private.lab.yaml", "testdata/seed/longhorn-public.lab.yaml",
		filepath.Join("..", "..", "..", "examples", "gitops", "lab.yaml"))
	for _, f := range files {
		for _, out := range []Output{Ingress, GatewayAPI} {
			name := strings.TrimSuffix(filepath.Base(f), ".yaml") + "." + string(out) + ".yaml"
			if strings.Contains(f, "gitops") {
				name = "gitops-" + name
			}
			t.Run(name, func(t *testing.T) {
				cfg := load(t, f)
				got := render(t, cfg, Options{Output: out})
				golden(t, name, got)
				if again := render(t, load(t, f), Options{Output: out}); !bytes.Equal(got, again) {
					t.Errorf("two renders of %s differ", f)
				}
			})
		}
	}
}

// TestSeedIngress renders the labgate files equivalent to the seed blog post's
// two hand-written Ingress objects and compares what they mean, key by key
// (YAML anchors and comments aside). The only other object is the
// DNSEndpoint of the entry point's address, a record the post made by hand.
func TestSeedIngress(t *testing.T) {
	for _, tt := range []struct{ class, entry, addr string }{
		{"private", "private-relay.mbund.org", "100.104.19.77"},
		{"public", "relay.mbund.org", "203.0.113.7"},
	} {
		t.Run(tt.class, func(t *testing.T) {
			seed := decodeAll(t, mustRead(t, "testdata/seed/longhorn-"+tt.class+".yaml"))
			cfg := load(t, "testdata/seed/longhorn-"+tt.class+".lab.yaml")
			ingress, others := byKind(decodeAll(t, render(t, cfg, Options{})), "Ingress")
			if diff := cmp.Diff(seed, ingress); diff != "" {
				t.Errorf("rendered Ingress differs from the seed's (-seed +rendered):\n%s", diff)
			}
			want := []map[string]any{{
				"apiVersion": "externaldns.k8s.io/v1alpha1", "kind": "DNSEndpoint",
				"metadata": map[string]any{"name": "labgate-entry-points"},
				"spec": map[string]any{"endpoints": []any{map[string]any{
					"dnsName": tt.entry, "recordType": "A", "targets": []any{tt.addr},
				}}},
			}}
			if diff := cmp.Diff(want, others); diff != "" {
				t.Errorf("objects besides the Ingress (-want +rendered):\n%s", diff)
			}
		})
	}
}

// byKind splits objects into those of kind and the others.
func byKind(objs []map[string]any, kind string) (of, others []map[string]any) {
	for _, o := range objs {
		if o["kind"] == kind {
			of = append(of, o)
		} else {
			others = append(others, o)
		}
	}
	return of, others
}

// TestSeedIngressBothPrefixes: by default the ExternalDNS target is written in
// both prefixes; that annotation is the only difference from the seed.
func TestSeedIngressBothPrefixes(t *testing.T) {
	data := bytes.Replace(mustRead(t, "testdata/seed/longhorn-public.lab.yaml"), []byte("external_dns_annotations: alpha"), nil, 1)
	cfg, err := config.Parse("longhorn-public.lab.yaml", data, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	seed := decodeAll(t, mustRead(t, "testdata/seed/longhorn-public.yaml"))
	seed[0]["metadata"].(map[string]any)["annotations"].(map[string]any)["external-dns.kubernetes.io/target"] = "relay.mbund.org"
	ingress, _ := byKind(decodeAll(t, render(t, cfg, Options{})), "Ingress")
	if diff := cmp.Diff(seed, ingress); diff != "" {
		t.Errorf("(-seed with the current prefix added +rendered):\n%s", diff)
	}
}

// TestOrderIndependent: services in another order render the same bytes.
func TestOrderIndependent(t *testing.T) {
	cfg := load(t, "testdata/lab.yaml")
	data := mustRead(t, "testdata/lab.yaml")
	i := bytes.Index(data, []byte("\nservices:\n"))
	head, body := data[:i+len("\nservices:\n")], string(data[i+len("\nservices:\n"):])
	items := strings.Split(strings.TrimPrefix(body, "  - "), "\n  - ")
	for l, r := 0, len(items)-1; l < r; l, r = l+1, r-1 {
		items[l], items[r] = items[r], items[l]
	}
	for j := range items {
		items[j] = strings.TrimRight(items[j], "\n") + "\n"
	}
	reversed := append(append([]byte{}, head...), "  - "+strings.Join(items, "  - ")...)
	cfg2, err := config.Parse(cfg.Path, reversed, config.Options{UnreadSecrets: true})
	if err != nil {
		t.Fatalf("Parse(reversed):\n%s\n%v", reversed, err)
	}
	if cfg2.Services[0].Name == cfg.Services[0].Name {
		t.Fatal("the services were not reordered")
	}
	for _, out := range []Output{Ingress, GatewayAPI} {
		if a, b := render(t, cfg, Options{Output: out}), render(t, cfg2, Options{Output: out}); !bytes.Equal(a, b) {
			t.Errorf("%s: the order of services changed the output:\n%s", out, cmp.Diff(string(a), string(b)))
		}
	}
}

func TestNamespaceOption(t *testing.T) {
	cfg := load(t, "testdata/lab.yaml")
	out := string(render(t, cfg, Options{Namespace: "other"}))
	if strings.Contains(out, "namespace: lab\n") || !strings.Contains(out, "namespace: other\n") || !strings.Contains(out, "other/mail-tcp-25:25:PROXY:PROXY") {
		t.Errorf("--namespace other did not replace kubernetes.namespace:\n%s", out)
	}
}

func TestNoSecrets(t *testing.T) {
	t.Setenv("CF_API_TOKEN", "cf-s3cr3t")
	cfg, err := config.Load("testdata/lab.yaml", config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []Output{Ingress, GatewayAPI} {
		got := string(render(t, cfg, Options{Output: out}))
		if strings.Contains(got, "cf-s3cr3t") || strings.Contains(got, "kind: Secret\n") {
			t.Errorf("%s output holds a secret or a Secret:\n%s", out, got)
		}
	}
}

// TestErrors: what cannot be rendered is refused at its position, all at once.
func TestErrors(t *testing.T) {
	const head = "version: 1\ndomain: example.org\n"
	tests := []struct {
		name, yaml string
		opts       Options
		want       []string
	}{
		{
			name: "static and echo",
			yaml: head + "services:\n- {name: a, host: a, static: .}\n- {name: b, host: b, echo: true}\n",
			want: []string{
				"lab.yaml:4:30: services[0].static: a static directory cannot be rendered for Kubernetes",
				"lab.yaml:5:28: services[1].echo: echo is a labgate diagnostic",
			},
		},
		{
			name: "public without relay",
			yaml: head + "services:\n- {name: a, host: a, expose: public, backend: 'http://10.0.0.1:80'}\n",
			want: []string{"lab.yaml:4:30: services[0].expose: a public service needs the relay section"},
		},
		{
			name: "two host names",
			yaml: head + "services:\n- name: a\n  host: a\n  backends: ['http://x.lan:80', 'http://y.lan:80']\n",
			want: []string{"lab.yaml:6:33: services[0].backends[1]: a Kubernetes Service reaches IP addresses or one host name"},
		},
		{
			name: "tcp without namespace",
			yaml: head + "services:\n- name: m\n  tcp: [{port: 25, backend: '10.0.0.1:25'}]\n",
			want: []string{"lab.yaml:4:3: services[0]: tcp port 25 goes into ingress-nginx's tcp-services ConfigMap"},
		},
		{
			name: "https backend by address, gateway-api",
			yaml: head + "services:\n- {name: a, host: a, backend: 'https://10.0.0.1:443'}\n",
			opts: Options{Output: GatewayAPI},
			want: []string{"services[0].backend_tls.server_name: Gateway API verifies an https backend by host name"},
		},
		{
			name: "ca_file",
			yaml: head + "services:\n- {name: a, host: a, backend: 'https://nas.lan', backend_tls: {ca_file: lab.yaml}}\n",
			want: []string{"services[0].backend_tls.ca_file: verifying the backend against ca_file is not rendered"},
		},
		{
			name: "backend without a host",
			yaml: head + "kubernetes: {namespace: lab}\nservices:\n- name: m\n  tcp: [{port: 25, backend: ':25'}]\n",
			want: []string{`lab.yaml:6:29: services[0].tcp[0].backend: ":25": use an IP address or a host name`},
		},
		{
			name: "url without a host",
			yaml: head + "services:\n- {name: a, host: a, backend: 'http://:8080'}\n",
			want: []string{`lab.yaml:4:31: services[0].backend: "http://:8080" has no host`},
		},
		{
			name: "a name labgate derives",
			yaml: head + "relay: {gateway: 100.101.102.103}\nservices:\n- {name: public-https-redirect, host: a, expose: public, backend: 'http://10.0.0.1:80'}\n",
			opts: Options{Output: GatewayAPI},
			want: []string{`lab.yaml:5:1: services: two HTTPRoute objects would be named "public-https-redirect"`},
		},
		{
			name: "public udp",
			yaml: head + "relay: {gateway: 100.101.102.103}\nkubernetes: {namespace: lab}\nservices:\n- name: wg\n  expose: public\n  udp: [{port: 51820, backend: '10.0.0.1:51820'}]\n",
			want: []string{"lab.yaml:8:9: services[0].udp[0]: a public udp port cannot be rendered"},
		},
		{
			name: "name clash",
			yaml: head + "kubernetes: {namespace: lab}\nservices:\n- {name: m-tcp-25, host: a, backend: 'http://10.0.0.1:80'}\n- name: m\n  tcp: [{port: 25, backend: '10.0.0.1:25'}]\n",
			want: []string{`services[1].tcp[0]: the Service "m-tcp-25" is already rendered for services[0]`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			name := filepath.Join(dir, "lab.yaml")
			if err := os.WriteFile(name, []byte(tt.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(name, config.Options{})
			if err != nil {
				t.Fatalf("Load:\n%s\n%v", tt.yaml, err)
			}
			_, err = Render(cfg, tt.opts)
			var errs config.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Render: %v, want config.Errors", err)
			}
			got := strings.ReplaceAll(errs.Error(), dir+string(filepath.Separator), "")
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("errors:\n%s\nwant a line containing:\n%s", got, w)
				}
			}
			if len(errs) != len(tt.want) {
				t.Errorf("%d errors, want %d:\n%s", len(errs), len(tt.want), got)
			}
		})
	}
}

func TestPromDuration(t *testing.T) {
	for d, want := range map[string]string{"30s": "30s", "1m0s": "1m", "1h30m0s": "1h30m", "1.5s": "1s500ms", "0s": "0s"} {
		pd, err := parseDuration(d)
		if err != nil {
			t.Fatal(err)
		}
		if got := promDuration(pd); got != want {
			t.Errorf("promDuration(%s) = %s, want %s", d, got, want)
		}
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeAll decodes a YAML stream into plain values, anchors resolved.
func decodeAll(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var v map[string]any
		if err := dec.Decode(&v); err != nil {
			if err.Error() == "EOF" {
				return out
			}
			t.Fatalf("decoding:\n%s\n%v", data, err)
		}
		out = append(out, v)
	}
}

func parseDuration(s string) (time.Duration, error) { return time.ParseDuration(s) }

// BenchmarkRender renders examples/gitops/lab.yaml (4 services: 20 objects as
// Ingress, 25 as Gateway API).
func BenchmarkRender(b *testing.B) {
	cfg, err := config.Load(filepath.Join("..", "..", "..", "examples", "gitops", "lab.yaml"), config.Options{UnreadSecrets: true})
	if err != nil {
		b.Fatal(err)
	}
	for _, out := range []Output{Ingress, GatewayAPI} {
		b.Run(string(out), func(b *testing.B) {
			for b.Loop() {
				if _, err := Render(cfg, Options{Output: out}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
