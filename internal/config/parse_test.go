package config

import (
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// cmpOpts compares the typed values by what they mean and shows them readably in diffs.
var cmpOpts = cmp.Options{
	cmpopts.IgnoreUnexported(Config{}),
	cmp.Transformer("URL", func(u *url.URL) string {
		if u == nil {
			return "<nil>"
		}
		return u.String()
	}),
	cmp.Transformer("Addr", func(a netip.Addr) string { return a.String() }),
	cmp.Transformer("AddrPort", func(a netip.AddrPort) string { return a.String() }),
	cmp.Transformer("Prefix", func(p netip.Prefix) string { return p.String() }),
	cmp.Transformer("Secret", func(s Secret) string { return "secret:" + s.Value() }),
}

// env is an Options.Getenv over a fixed set of variables.
func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// defaultKubernetes is the kubernetes section of a file that does not set one.
var defaultKubernetes = Kubernetes{
	IngressClass:           ClassNames{"public", "private"},
	Gateway:                ClassNames{"public", "private"},
	GatewayClass:           ClassNames{"public", "private"},
	ClusterIssuer:          "letsencrypt-prod",
	ExternalDNSAnnotations: "both",
	TCPServices:            ClassNames{"ingress-public/tcp-services", "ingress-private/tcp-services"},
	UDPServices:            ClassNames{"ingress-public/udp-services", "ingress-private/udp-services"},
	SecretStore:            SecretStore{"labgate", "ClusterSecretStore"},
	BlackboxExporter:       "blackbox-exporter.monitoring.svc:9115",
}

// defaultLimits are the gateway limits of a file that does not set any.
var defaultLimits = Limits{
	ProxyHeaderTimeout:    5 * time.Second,
	ReadHeaderTimeout:     10 * time.Second,
	IdleTimeout:           2 * time.Minute,
	MaxHeaderBytes:        65536,
	BackendConnectTimeout: 5 * time.Second,
	BackendHeaderTimeout:  60 * time.Second,
	ShutdownGrace:         30 * time.Second,
}

func TestParseDesignExample(t *testing.T) {
	const name = "testdata/design.yaml"
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(name, data, Options{Getenv: env("CF_API_TOKEN", "cf-token", "MATRIX_TOKEN", "mx-token")})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Config{
		Path:     name,
		Version:  1,
		Domain:   "example.org",
		StateDir: "/var/lib/labgate",
		Log:      Log{Format: "text", Level: "info", Access: true},
		TLS: TLS{
			ACME: &ACME{
				Email:     "me@example.org",
				Directory: "https://acme-v02.api.letsencrypt.org/directory",
			},
			PrivateWildcard: true,
		},
		DNS: DNS{
			Provider:  &DNSProvider{Type: "cloudflare", APIToken: NewSecret("cf-token"), TSIGAlgorithm: "hmac-sha256"},
			Owner:     "homelab",
			Resolvers: []string{"1.1.1.1:53"},
			Serve:     &DNSServe{Listen: []string{"100.101.102.103:53"}},
			Zone:      "example.org",
			TTL:       300,
			Interval:  10 * time.Minute,
			Ownership: "txt",
		},
		Relay: &Relay{
			Name:           "relay",
			FQDN:           "relay.example.org",
			PublicIPs:      []netip.Addr{netip.MustParseAddr("203.0.113.7")},
			Listen:         netip.MustParseAddr("0.0.0.0"),
			Gateway:        netip.MustParseAddr("100.101.102.103"),
			Admin:          "127.0.0.1:9181",
			ConnectTimeout: 5 * time.Second, IdleTimeout: time.Hour, MaxConnsPerSource: 256, UDPFlowTimeout: time.Minute,
		},
		Gateway: Gateway{
			Public: &PublicListeners{
				HTTPS:         []string{"100.101.102.103:10443"},
				HTTP:          []string{"100.101.102.103:10080"},
				TrustedRelays: []netip.Prefix{netip.MustParsePrefix("100.90.0.1/32")},
			},
			Private: &PrivateListeners{
				Name:  "private-relay",
				FQDN:  "private-relay.example.org",
				HTTPS: []string{"100.101.102.103:443"},
				HTTP:  []string{"100.101.102.103:80"},
				Allow: []netip.Prefix{netip.MustParsePrefix("100.64.0.0/10"), netip.MustParsePrefix("192.168.1.0/24")},
			},
			Admin:  "127.0.0.1:9180",
			Limits: defaultLimits,
		},
		Alerts: []Receiver{
			{Name: "ops", Webhook: &Webhook{URL: mustURL(t, "https://hooks.example.org/x")}},
			{Name: "phone", Matrix: &Matrix{
				Homeserver:  mustURL(t, "https://matrix.example.org"),
				Room:        "!abc:example.org",
				AccessToken: NewSecret("mx-token"),
			}},
		},
		Alerting: Alerting{Reminder: 4 * time.Hour},
		Services: []*Service{
			{
				Name:     "vaultwarden",
				Hosts:    []string{"vault.example.org"},
				Path:     "/",
				Expose:   Private,
				Backends: []*url.URL{mustURL(t, "http://192.168.1.20:8080")},
				Health: &Health{Path: "/alive", Interval: 30 * time.Second, Timeout: 5 * time.Second,
					Checks: []Check{{Name: "http", Type: "http", Path: "/alive", MinDaysLeft: 14}}, Failures: 3, Successes: 2},
				Metrics: "/metrics",
				Alert:   []string{"phone"},
			},
			{
				Name:   "mail",
				Path:   "/",
				Expose: Public,
				TCP: []L4Route{
					{Port: 25, Backend: "192.168.1.30:25", ProxyProtocol: "v2"},
					{Port: 993, Backend: "192.168.1.30:993", ProxyProtocol: "v2"},
				},
			},
		},
		Status: defaultStatus,
	}
	want.Kubernetes = defaultKubernetes
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Errorf("Parse(%s) mismatch (-want +got):\n%s", name, diff)
	}
	if got.Services[0].HTTP() != true || got.Services[1].HTTP() != false {
		t.Errorf("HTTP() = %v, %v; want true, false", got.Services[0].HTTP(), got.Services[1].HTTP())
	}
}

// The DESIGN.md example writes ${MATRIX_TOKEN} unquoted inside { }, which is
// not valid YAML: the error must say how to fix it.
func TestParseUnquotedVarInFlowHint(t *testing.T) {
	data, err := os.ReadFile("testdata/design.yaml")
	if err != nil {
		t.Fatal(err)
	}
	unquoted := strings.Replace(string(data), `"${MATRIX_TOKEN}"`, `${MATRIX_TOKEN}`, 1)
	if unquoted == string(data) {
		t.Fatal("testdata/design.yaml no longer quotes ${MATRIX_TOKEN}")
	}
	_, err = Parse("lab.yaml", []byte(unquoted), Options{Getenv: env("CF_API_TOKEN", "x", "MATRIX_TOKEN", "y")})
	want := `lab.yaml:41:1: did not find expected ',' or '}' (inside { } or [ ], quote "${VAR}" references)`
	if err == nil || err.Error() != want {
		t.Errorf("Parse(unquoted) error:\n got %v\nwant %s", err, want)
	}
}

// minimal is the smallest valid file; tests append to it.
const minimal = "version: 1\n"

func TestParse(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "www"), 0o755); err != nil {
		t.Fatal(err)
	}
	getenv := env("TOKEN", "from-env", "HOST", "vault", "EMPTY", "")
	tests := []struct {
		name string
		yaml string
		want func(c *Config) // edits the defaults into what the file should give
	}{
		{
			name: "defaults",
			yaml: minimal,
			want: func(c *Config) {},
		},
		{
			name: "explicit null is absent",
			yaml: minimal + "log:\ngateway: ~\ntls: {acme: null}\nrelay:\n",
			want: func(c *Config) {},
		},
		{
			name: "null scalar takes the default",
			yaml: minimal + "log: {format: ~, level: null}\nstate_dir:\n",
			want: func(c *Config) {},
		},
		{
			name: "relative state_dir is taken from the file's directory",
			yaml: minimal + "state_dir: state\n",
			want: func(c *Config) { c.StateDir = filepath.Join(dir, "state") },
		},
		{
			name: "host gets the domain",
			yaml: minimal + "domain: Example.ORG.\nservices:\n- {name: a, host: Vault, echo: true}\n- {name: b, host: b.other.net, echo: true}\n",
			want: func(c *Config) {
				c.Domain = "example.org"
				c.Services = []*Service{
					{Name: "a", Hosts: []string{"vault.example.org"}, Path: "/", Echo: true},
					{Name: "b", Hosts: []string{"b.other.net"}, Path: "/", Echo: true},
				}
			},
		},
		{
			name: "hosts and backends as one string or a list",
			yaml: minimal + "domain: example.org\nservices:\n" +
				"- {name: a, hosts: x, backends: http://10.0.0.1:80}\n" +
				"- {name: b, hosts: [y, '*.z.other.net'], backends: [http://10.0.0.2, https://10.0.0.3:8443]}\n",
			want: func(c *Config) {
				c.Domain = "example.org"
				c.Services = []*Service{
					{Name: "a", Hosts: []string{"x.example.org"}, Path: "/", Backends: []*url.URL{mustURL(t, "http://10.0.0.1:80")}},
					{Name: "b", Hosts: []string{"y.example.org", "*.z.other.net"}, Path: "/",
						Backends: []*url.URL{mustURL(t, "http://10.0.0.2"), mustURL(t, "https://10.0.0.3:8443")}},
				}
			},
		},
		{
			name: "scalar listener addresses and trusted relays",
			yaml: minimal + "domain: example.org\ngateway:\n  public: {https: ':443', trusted_relays: 10.0.0.1}\n  private: {https: '127.0.0.1:8443', allow: 192.168.0.0/16}\n  admin: off\n",
			want: func(c *Config) {
				c.Gateway.Public = &PublicListeners{HTTPS: []string{":443"}, TrustedRelays: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}}
				c.Domain = "example.org"
				c.Gateway.Private = &PrivateListeners{Name: "private-relay", FQDN: "private-relay.example.org", HTTPS: []string{"127.0.0.1:8443"}, Allow: []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16")}}
				c.Gateway.Admin = ""
			},
		},
		{
			name: "env expansion and $$ escape",
			yaml: minimal + "domain: example.org\nservices:\n- {name: a, host: '${HOST}', metrics: '/m$$x${EMPTY}', echo: true}\n" +
				"alerts:\n  w: {webhook: {url: 'https://h.example/$${TOKEN}', secret: '${TOKEN}'}}\n",
			want: func(c *Config) {
				c.Domain = "example.org"
				c.Services = []*Service{{Name: "a", Hosts: []string{"vault.example.org"}, Path: "/", Echo: true, Metrics: "/m$x"}}
				c.Alerts = []Receiver{{Name: "w", Webhook: &Webhook{URL: mustURL(t, "https://h.example/${TOKEN}"), Secret: NewSecret("from-env")}}}
			},
		},
		{
			name: "secret from a file relative to the config",
			yaml: minimal + "dns:\n  provider: {type: cloudflare, api_token_file: token}\n",
			want: func(c *Config) {
				c.DNS.Provider = &DNSProvider{Type: "cloudflare", APIToken: NewSecret("from-file"), TSIGAlgorithm: "hmac-sha256"}
			},
		},
		{
			name: "image source token from a file",
			yaml: minimal + "status:\n  images: [{name: cpu, url: 'http://127.0.0.1:3000/render/d-solo/x', bearer_token_file: token}]\n",
			want: func(c *Config) {
				c.Status.Images = []StatusImage{{Name: "cpu", URL: mustURL(t, "http://127.0.0.1:3000/render/d-solo/x"), BearerToken: NewSecret("from-file"), Interval: 5 * time.Minute}}
			},
		},
		{
			name: "secret file name from the environment",
			yaml: minimal + "dns:\n  provider: {type: rfc2136, server: 'ns1:53', tsig_name: k, tsig_secret_file: '${SECRET_DIR}/token', tsig_algorithm: hmac-sha512}\n",
			want: func(c *Config) {
				c.DNS.Provider = &DNSProvider{Type: "rfc2136", Server: "ns1:53", TSIGName: "k", TSIGAlgorithm: "hmac-sha512", TSIGSecret: NewSecret("from-file")}
			},
		},
		{
			name: "every default of a service",
			yaml: minimal + "domain: example.org\nservices:\n- name: a\n  host: a\n  static: www\n  health: {}\n  udp: [{port: 53, backend: '10.0.0.1:53'}]\n",
			want: func(c *Config) {
				c.Domain = "example.org"
				c.Services = []*Service{{Name: "a", Hosts: []string{"a.example.org"}, Path: "/", Static: filepath.Join(dir, "www"),
					Health: &Health{Path: "/", Interval: 30 * time.Second, Timeout: 5 * time.Second,
						Checks: []Check{{Name: "http", Type: "http", Path: "/", MinDaysLeft: 14}}, Failures: 3, Successes: 2},
					UDP: []L4Route{{Port: 53, Backend: "10.0.0.1:53"}}}}
			},
		},
		{
			name: "acme staging, limits and log",
			yaml: minimal + "tls: {acme: {email: a@b.c, ca: letsencrypt-staging}}\nlog: {format: json, level: debug, access: false}\n" +
				"gateway: {limits: {idle_timeout: 1h30m, max_header_bytes: 4096, backend_header_timeout: 0}}\n",
			want: func(c *Config) {
				c.TLS.ACME = &ACME{Email: "a@b.c", Directory: "https://acme-staging-v02.api.letsencrypt.org/directory"}
				c.Log = Log{Format: "json", Level: "debug"}
				c.Gateway.Limits.IdleTimeout = 90 * time.Minute
				c.Gateway.Limits.MaxHeaderBytes = 4096
				c.Gateway.Limits.BackendHeaderTimeout = 0
			},
		},
		{
			name: "relay speedtest defaults",
			yaml: minimal + "domain: example.org\nrelay: {gateway: 100.101.102.103, speedtest: {listen: '100.90.0.1:9182'}}\n",
			want: func(c *Config) {
				c.Domain = "example.org"
				c.Relay = &Relay{Name: "relay", FQDN: "relay.example.org", Listen: netip.MustParseAddr("0.0.0.0"),
					Gateway: netip.MustParseAddr("100.101.102.103"), Admin: "127.0.0.1:9181",
					ConnectTimeout: 5 * time.Second, IdleTimeout: time.Hour, MaxConnsPerSource: 256, UDPFlowTimeout: time.Minute,
					Speedtest: &Speedtest{Listen: netip.MustParseAddrPort("100.90.0.1:9182"), Interval: 10 * time.Minute, Budget: 4 << 20, Samples: 1008}}
			},
		},
		{
			name: "relay speedtest set",
			yaml: minimal + "domain: example.org\nrelay:\n  gateway: fd7a::2\n  speedtest: {listen: '[fd7a::1]:9182', interval: 1h, budget: 65536, samples: 24}\n",
			want: func(c *Config) {
				c.Domain = "example.org"
				c.Relay = &Relay{Name: "relay", FQDN: "relay.example.org", Listen: netip.MustParseAddr("0.0.0.0"),
					Gateway: netip.MustParseAddr("fd7a::2"), Admin: "127.0.0.1:9181",
					ConnectTimeout: 5 * time.Second, IdleTimeout: time.Hour, MaxConnsPerSource: 256, UDPFlowTimeout: time.Minute,
					Speedtest: &Speedtest{Listen: netip.MustParseAddrPort("[fd7a::1]:9182"), Interval: time.Hour, Budget: 64 << 10, Samples: 24}}
			},
		},
		{
			name: "relay speedtest beside forwarded ports on another address",
			yaml: minimal + "domain: example.org\nrelay: {gateway: 100.101.102.103, listen: 203.0.113.7, speedtest: {listen: '100.90.0.1:443'}}\n" +
				"gateway:\n  public: {https: '100.101.102.103:10443', trusted_relays: [100.90.0.1]}\n",
			want: func(c *Config) {
				c.Domain = "example.org"
				c.Relay = &Relay{Name: "relay", FQDN: "relay.example.org", Listen: netip.MustParseAddr("203.0.113.7"),
					Gateway: netip.MustParseAddr("100.101.102.103"), Admin: "127.0.0.1:9181",
					ConnectTimeout: 5 * time.Second, IdleTimeout: time.Hour, MaxConnsPerSource: 256, UDPFlowTimeout: time.Minute,
					Speedtest: &Speedtest{Listen: netip.MustParseAddrPort("100.90.0.1:443"), Interval: 10 * time.Minute, Budget: 4 << 20, Samples: 1008}}
				c.Gateway.Public = &PublicListeners{HTTPS: []string{"100.101.102.103:10443"}, TrustedRelays: []netip.Prefix{netip.MustParsePrefix("100.90.0.1/32")}}
			},
		},
		{
			name: "anchors and aliases",
			yaml: minimal + "domain: example.org\nservices:\n- {name: a, host: a, backend: &b 'http://10.0.0.9:80'}\n- {name: b, host: b, backend: *b}\n",
			want: func(c *Config) {
				c.Domain = "example.org"
				be := []*url.URL{mustURL(t, "http://10.0.0.9:80")}
				c.Services = []*Service{
					{Name: "a", Hosts: []string{"a.example.org"}, Path: "/", Backends: be},
					{Name: "b", Hosts: []string{"b.example.org"}, Path: "/", Backends: be},
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := filepath.Join(dir, "lab.yaml")
			ge := getenv
			if strings.Contains(tt.yaml, "SECRET_DIR") {
				ge = env("SECRET_DIR", dir)
			}
			got, err := Parse(name, []byte(tt.yaml), Options{Getenv: ge})
			if err != nil {
				t.Fatalf("Parse:\n%s\nerror: %v", tt.yaml, err)
			}
			want := &Config{
				Path:       name,
				Version:    1,
				StateDir:   "/var/lib/labgate",
				Log:        Log{Format: "text", Level: "info", Access: true},
				DNS:        DNS{Owner: "labgate", TTL: 300, Interval: 10 * time.Minute, Ownership: "txt"},
				Gateway:    Gateway{Admin: "127.0.0.1:9180", Limits: defaultLimits},
				Status:     defaultStatus,
				Kubernetes: defaultKubernetes,
				Alerting:   Alerting{Reminder: 4 * time.Hour},
			}
			tt.want(want)
			if want.DNS.Zone == "" {
				want.DNS.Zone = want.Domain // dns.zone defaults to the domain
			}
			if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
				t.Errorf("Parse:\n%s\nmismatch (-want +got):\n%s", tt.yaml, diff)
			}
		})
	}
}
