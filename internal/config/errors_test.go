package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestParseErrors is a golden table: a file and every line Parse reports for
// it, exactly as `labgate check` prints them.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "unknown key with did you mean",
			yaml: "version: 1\nservices:\n- nmae: a\n  host: x.example.org\n  echo: true\n",
			want: []string{
				"lab.yaml:3:3: services[0].nmae: unknown key \"nmae\" (did you mean \"name\"?) (valid keys: name, host, hosts, path, expose, backend, backends, static, echo, passthrough, backend_tls, allow_http, health, metrics, alert, tcp, udp, kubernetes)",
				"lab.yaml:3:3: services[0].name: missing (required)",
			},
		},
		{
			name: "unknown top-level key",
			yaml: "version: 1\ndomian: example.org\ncolour: blue\n",
			want: []string{
				"lab.yaml:2:1: domian: unknown key \"domian\" (did you mean \"domain\"?) (valid keys: version, domain, state_dir, log, tls, dns, relay, gateway, alerts, alerting, services, git, status, kubernetes)",
				"lab.yaml:3:1: colour: unknown key \"colour\" (valid keys: version, domain, state_dir, log, tls, dns, relay, gateway, alerts, alerting, services, git, status, kubernetes)",
			},
		},
		{
			name: "bad enum",
			yaml: "version: 1\nlog: {format: jsn, level: verbose}\nservices:\n- {name: a, host: a.b, echo: true, expose: Public}\n",
			want: []string{
				"lab.yaml:2:15: log.format: \"jsn\" is not one of text, json (did you mean \"json\"?)",
				"lab.yaml:2:27: log.level: \"verbose\" is not one of debug, info, warn, error",
				"lab.yaml:4:44: services[0].expose: \"Public\" is not one of private, public (did you mean \"public\"?)",
			},
		},
		{
			name: "bad duration",
			yaml: "version: 1\nservices:\n- {name: a, host: a.b, echo: true, health: {interval: 30, timeout: 5 s}}\ngateway: {limits: {idle_timeout: -1m}}\n",
			want: []string{
				"lab.yaml:3:55: services[0].health.interval: want a duration such as 30s or 5m, not \"30\"",
				"lab.yaml:3:68: services[0].health.timeout: want a duration such as 30s or 5m, not \"5 s\"",
				"lab.yaml:4:34: gateway.limits.idle_timeout: want a duration such as 30s or 5m, not \"-1m\"",
			},
		},
		{
			name: "wrong kinds",
			yaml: "version: 1\nservices: {name: a}\nlog: [text]\ntls: yes\ngateway: {admin: [a, b], limits: {max_header_bytes: lots}}\nalerts: [phone]\ndns: {resolvers: {a: b}}\n",
			want: []string{
				"lab.yaml:2:11: services: want a list, not a mapping",
				"lab.yaml:3:6: log: want a mapping with keys format, level, access, not a list",
				"lab.yaml:4:6: tls: want a mapping with keys acme, private_wildcard, not \"yes\"",
				"lab.yaml:5:18: gateway.admin: want a string, not a list",
				"lab.yaml:5:53: gateway.limits.max_header_bytes: want a whole number, not \"lots\"",
				"lab.yaml:6:9: alerts: want a mapping of names, not a list",
				"lab.yaml:7:18: dns.resolvers: want a list, not a mapping",
			},
		},
		{
			name: "not a mapping at the top",
			yaml: "- version: 1\n",
			want: []string{
				"lab.yaml:1:1: want a mapping with keys version, domain, state_dir, log, tls, dns, relay, gateway, alerts, alerting, services, git, status, kubernetes, not a list",
			},
		},
		{
			name: "duplicate listener addresses",
			yaml: "version: 1\ndomain: example.org\ngateway:\n  public: {https: ':443', http: ':80', trusted_relays: 10.0.0.1}\n  private: {https: [':8443', ':443'], http: ':8443'}\n  admin: ':8443'\n",
			want: []string{
				"lab.yaml:5:30: gateway.private.https[1]: :443 is already used by gateway.public.https[0]",
				"lab.yaml:5:45: gateway.private.http[0]: :8443 is already used by gateway.private.https[0]",
				"lab.yaml:6:10: gateway.admin: :8443 is already used by gateway.private.https[0]",
			},
		},
		{
			name: "duplicate service name and host+path",
			yaml: "version: 1\ndomain: example.org\nservices:\n- {name: a, host: x, echo: true}\n- {name: a, host: x, echo: true}\n- {name: b, host: x.example.org, path: /api, echo: true}\n- {name: c, host: X, path: /api/, echo: true}\n",
			want: []string{
				"lab.yaml:5:3: services[1]: x.example.org/ is already served by services[0]",
				"lab.yaml:5:10: services[1].name: \"a\" is already the name of services[0]",
				"lab.yaml:7:3: services[3]: x.example.org/api/ is already served by services[2]",
			},
		},
		{
			name: "tcp port reuse",
			yaml: "version: 1\nservices:\n- {name: a, tcp: [{port: 25, backend: 'h:25'}]}\n- {name: b, tcp: [{port: 25, backend: 'h:26'}], udp: [{port: 25, backend: 'h:25'}, {port: 70000, backend: 'h'}]}\n",
			want: []string{
				"lab.yaml:4:26: services[1].tcp[0].port: tcp port 25 is already used by services[0].tcp[0]",
				"lab.yaml:4:91: services[1].udp[1].port: 70000 is not a port (1-65535)",
				"lab.yaml:4:107: services[1].udp[1].backend: \"h\" is not host:port (for IPv6 write [::1]:443)",
			},
		},
		{
			name: "environment variables",
			yaml: "version: 1\ndns:\n  provider: {type: cloudflare, api_token: '${NOPE}'}\n  owner: '${1BAD}'\n  resolvers: ['${UNTERMINATED']\n",
			want: []string{
				"lab.yaml:3:43: dns.provider.api_token: environment variable NOPE is not set",
				"lab.yaml:4:10: dns.owner: invalid environment variable name \"1BAD\" in ${...}",
				"lab.yaml:5:15: dns.resolvers[0]: unterminated ${ (write $$ for a literal $)",
			},
		},
		{
			// The unset variable is the one problem: the secret is not "missing" as well.
			name: "unset environment variable in a required secret",
			yaml: "version: 1\ndns:\n  provider: {type: rfc2136, server: 'ns:53', tsig_name: k, tsig_secret: '${NOPE}'}\n",
			want: []string{
				"lab.yaml:3:73: dns.provider.tsig_secret: environment variable NOPE is not set",
			},
		},
		{
			name: "secret and secret file",
			yaml: "version: 1\ndns:\n  provider: {type: rfc2136, server: 'ns:53', tsig_name: k, tsig_secret: x, tsig_secret_file: y}\n",
			want: []string{
				"lab.yaml:3:76: dns.provider.tsig_secret_file: set more than once (write only one of tsig_secret and tsig_secret_file)",
			},
		},
		{
			name: "unreadable secret file",
			yaml: "version: 1\nalerts:\n  phone: {matrix: {homeserver: 'https://m', room: '!r:m', access_token_file: does-not-exist}}\n",
			want: []string{
				"lab.yaml:3:78: alerts.phone.matrix.access_token_file: cannot read secret: does-not-exist: no such file or directory",
			},
		},
		{
			name: "receivers",
			yaml: "version: 1\nalerts:\n  phone: {matrix: {homeserver: htp://m, room: abc, access_token: t}}\n  empty: ~\n  two: {webhook: {url: 'https://a'}, ntfy: {url: 'https://b'}}\n  mail: {email: {smtp: 'mx:25', to: me@example.org}}\nservices:\n- {name: a, tcp: [{port: 1, backend: 'h:1'}], alert: [phnoe]}\n",
			want: []string{
				"lab.yaml:3:32: alerts.phone.matrix.homeserver: unsupported scheme \"htp\" (want http, https)",
				"lab.yaml:3:47: alerts.phone.matrix.room: \"abc\" is not a room id (!id:server) or alias (#name:server)",
				"lab.yaml:4:10: alerts.empty: empty receiver (set one of matrix, webhook, ntfy, email)",
				"lab.yaml:5:8: alerts.two: set exactly one of matrix, webhook, ntfy, email (found 2)",
				"lab.yaml:6:17: alerts.mail.email.from: missing (required)",
				"lab.yaml:8:55: services[0].alert[0]: no receiver \"phnoe\" under alerts (did you mean \"phone\"?)",
			},
		},
		{
			name: "key set twice",
			yaml: "version: 2\nversion: 1\nstate_dir: [a]\n",
			want: []string{
				"lab.yaml:2:1: version: set more than once",
				"lab.yaml:3:12: state_dir: want a string, not a list",
			},
		},
		{
			name: "required",
			yaml: "version: 1\ntls: {acme: {}}\ndns: {provider: {}, serve: {}}\nrelay: {name: r.example.org}\ngateway: {public: {https: ':1'}}\nservices:\n- {}\n- ~\n- {name: ~, tcp: [{}, ~]}\n",
			want: []string{
				"lab.yaml:2:13: tls.acme.email: missing (required)",
				"lab.yaml:3:17: dns.provider.type: missing (required)",
				"lab.yaml:3:28: dns.serve.listen: missing (required)",
				"lab.yaml:4:8: relay.gateway: missing (required)",
				"lab.yaml:5:19: gateway.public.trusted_relays: missing (required)",
				"lab.yaml:7:3: services[0].name: missing (required)",
				"lab.yaml:7:3: services[0]: the service exposes nothing: set host and backend, or tcp/udp ports",
				"lab.yaml:8:3: services[1]: empty service (give it at least a name)",
				"lab.yaml:9:4: services[2].name: missing (required)",
				"lab.yaml:9:19: services[2].tcp[0].port: missing (required)",
				"lab.yaml:9:19: services[2].tcp[0].backend: missing (required)",
				"lab.yaml:9:23: services[2].tcp[1]: empty entry (set port and backend)",
			},
		},
		{
			name: "backends",
			yaml: "version: 1\nservices:\n- name: a\n  host: x.y\n  backend: ftp://h\n  backends: [http://h/path]\n- {name: b, host: b.y, backend: 'http://b', static: /nonexistent, echo: true}\n- {name: c, backend: 'http://c'}\n- {name: d}\n",
			want: []string{
				"lab.yaml:5:12: services[0].backend: set backend or backends, not both",
				"lab.yaml:5:12: services[0].backend: unsupported scheme \"ftp\" (want http, https)",
				"lab.yaml:7:3: services[1]: set only one of backend (or backends), static and echo",
				"lab.yaml:7:53: services[1].static: \"/nonexistent\" is not a directory",
				"lab.yaml:8:3: services[2]: backend, static or echo without host: set host (or hosts) to route HTTP to it",
				"lab.yaml:9:3: services[3]: the service exposes nothing: set host and backend, or tcp/udp ports",
			},
		},
		{
			name: "addresses",
			yaml: "version: 1\nrelay: {public_ips: [1.2.3], gateway: me}\ngateway:\n  public: {trusted_relays: [10.0.0.1/8, x], https: 'nohost', http: 'h:http'}\n  private: {https: '[::1:443', allow: '10.0.0.0/33'}\n",
			want: []string{
				"lab.yaml:2:8: relay.name: \"relay\" has no dot and there is no top-level domain to append (set domain or write the full name)",
				"lab.yaml:2:22: relay.public_ips[0]: \"1.2.3\" is not an IP address",
				"lab.yaml:2:39: relay.gateway: \"me\" is not an IP address",
				"lab.yaml:4:29: gateway.public.trusted_relays[0]: \"10.0.0.1/8\" has host bits set (did you mean 10.0.0.0/8?)",
				"lab.yaml:4:41: gateway.public.trusted_relays[1]: \"x\" is neither a CIDR prefix (100.64.0.0/10) nor an IP address",
				"lab.yaml:4:52: gateway.public.https[0]: \"nohost\" is not host:port (for IPv6 write [::1]:443)",
				"lab.yaml:4:68: gateway.public.http[0]: \"h:http\": port \"http\" is not a number from 0 to 65535",
				"lab.yaml:5:12: gateway.private.name: \"private-relay\" has no dot and there is no top-level domain to append (set domain or write the full name)",
				"lab.yaml:5:20: gateway.private.https[0]: \"[::1:443\" is not host:port (for IPv6 write [::1]:443)",
				"lab.yaml:5:39: gateway.private.allow[0]: \"10.0.0.0/33\" is neither a CIDR prefix (100.64.0.0/10) nor an IP address",
			},
		},
		{
			name: "relay speedtest without listen",
			yaml: "version: 1\ndomain: example.org\nrelay:\n  gateway: 100.101.102.103\n  speedtest: {interval: 5m}\n",
			want: []string{
				"lab.yaml:5:14: relay.speedtest.listen: missing (required)",
			},
		},
		{
			name: "relay speedtest values",
			yaml: "version: 1\ndomain: example.org\nrelay:\n  gateway: 100.101.102.103\n" +
				"  speedtest: {listen: '0.0.0.0:9182', interval: 500ms, budget: 1000, samples: 0}\n",
			want: []string{
				"lab.yaml:5:23: relay.speedtest.listen: \"0.0.0.0:9182\": the gateway connects here, so write the relay's VPN address and a port",
				"lab.yaml:5:49: relay.speedtest.interval: at least 1s",
				"lab.yaml:5:64: relay.speedtest.budget: 1000 bytes is out of range (65536 to 134217728, 64 KiB to 128 MiB)",
				"lab.yaml:5:79: relay.speedtest.samples: at least 1",
			},
		},
		{
			name: "relay speedtest kinds",
			yaml: "version: 1\ndomain: example.org\nrelay:\n  gateway: 100.101.102.103\n  speedtest:\n" +
				"    listen: relay:9182\n    budget: 4MiB\n    interval: 10\n    speed: 3\n",
			want: []string{
				"lab.yaml:6:13: relay.speedtest.listen: \"relay:9182\" is not ip:port on the relay's VPN address (for IPv6 write [fd7a::1]:9182)",
				"lab.yaml:7:13: relay.speedtest.budget: want a whole number, not \"4MiB\"",
				"lab.yaml:8:15: relay.speedtest.interval: want a duration such as 30s or 5m, not \"10\"",
				"lab.yaml:9:5: relay.speedtest.speed: unknown key \"speed\" (valid keys: listen, interval, budget, samples)",
			},
		},
		{
			name: "relay speedtest bounds",
			yaml: "version: 1\ndomain: example.org\nrelay:\n  gateway: 100.101.102.103\n  speedtest: {listen: '100.90.0.1:0', budget: 268435456}\n",
			want: []string{
				"lab.yaml:5:23: relay.speedtest.listen: \"100.90.0.1:0\": the gateway connects here, so write the relay's VPN address and a port",
				"lab.yaml:5:47: relay.speedtest.budget: 268435456 bytes is out of range (65536 to 134217728, 64 KiB to 128 MiB)",
			},
		},
		{
			name: "relay speedtest on a port the relay binds",
			yaml: "version: 1\ndomain: example.org\nrelay:\n  gateway: 100.101.102.103\n  speedtest: {listen: '100.90.0.1:443'}\n" +
				"gateway:\n  public: {https: '100.101.102.103:10443', trusted_relays: [100.90.0.1]}\n",
			want: []string{
				"lab.yaml:5:23: relay.speedtest.listen: the relay already binds port 443 on 0.0.0.0 (relay.listen) to forward it to gateway.public",
			},
		},
		{
			name: "relay speedtest on a public tcp port",
			yaml: "version: 1\ndomain: example.org\nrelay:\n  gateway: 100.101.102.103\n  speedtest: {listen: '100.90.0.1:25'}\n" +
				"services:\n- {name: ssh, tcp: [{port: 22, backend: '10.0.0.1:22'}]}\n- {name: mail, expose: public, tcp: [{port: 25, backend: '10.0.0.1:25'}]}\n",
			want: []string{
				"lab.yaml:5:23: relay.speedtest.listen: the relay already binds port 25 on 0.0.0.0 (relay.listen) to forward it to services[1].tcp[0]",
			},
		},
		{
			name: "relay speedtest on relay.admin",
			yaml: "version: 1\ndomain: example.org\nrelay:\n  gateway: 100.101.102.103\n  admin: 0.0.0.0:9181\n  speedtest: {listen: '100.90.0.1:9181'}\n",
			want: []string{
				"lab.yaml:6:23: relay.speedtest.listen: 100.90.0.1:9181 is already relay.admin (0.0.0.0:9181)",
			},
		},
		{
			name: "acme, limits, health",
			yaml: "version: 1\ntls:\n  acme: {email: nope, ca: http://x}\nlog: {access: yes}\ngateway: {limits: {max_header_bytes: 10, proxy_header_timeout: 0s}}\nservices:\n- {name: a, host: a.b, echo: true, path: api, health: {path: alive, interval: 500ms, status: 42}}\n",
			want: []string{
				"lab.yaml:3:17: tls.acme.email: \"nope\" is not an email address",
				"lab.yaml:3:27: tls.acme.ca: \"http://x\" is not letsencrypt, letsencrypt-staging or an https:// directory URL",
				"lab.yaml:4:15: log.access: want true or false, not \"yes\"",
				"lab.yaml:5:38: gateway.limits.max_header_bytes: 10 is too small (at least 4096)",
				"lab.yaml:5:64: gateway.limits.proxy_header_timeout: must be more than 0",
				"lab.yaml:7:42: services[0].path: \"api\" must start with /",
				"lab.yaml:7:55: services[0].health.timeout: must be more than 0 and at most the interval",
				"lab.yaml:7:62: services[0].health.path: \"alive\" must start with /",
				"lab.yaml:7:79: services[0].health.interval: at least 1s",
				"lab.yaml:7:94: services[0].health.status: 42 is not an HTTP status",
			},
		},
		{
			name: "empty file",
			yaml: "",
			want: []string{
				"lab.yaml: the file is empty (start with `version: 1`)",
			},
		},
		{
			name: "only a comment",
			yaml: "# lab.yaml\n",
			want: []string{
				"lab.yaml: the file is empty (start with `version: 1`)",
			},
		},
		{
			name: "null document",
			yaml: "~\n",
			want: []string{
				"lab.yaml: the file is empty (start with `version: 1`)",
			},
		},
		{
			name: "multiple documents",
			yaml: "version: 1\n---\nversion: 1\n",
			want: []string{
				"lab.yaml:2:1: only one YAML document is allowed (remove the ---)",
			},
		},
		{
			name: "broken second document",
			yaml: "version: 1\n---\nfoo: [\n",
			want: []string{
				"lab.yaml:4:1: did not find expected node content",
			},
		},
		{
			name: "yaml syntax error",
			yaml: "version: 1\nservices:\n  - name: a\n   host: b\n",
			want: []string{
				"lab.yaml:3:1: did not find expected '-' indicator",
			},
		},
		{
			name: "tab indentation",
			yaml: "version: 1\nlog:\n\tformat: json\n",
			want: []string{
				"lab.yaml:3:1: found character that cannot start any token",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("lab.yaml", []byte(tt.yaml), Options{Getenv: env()})
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want errors", tt.yaml, cfg)
			}
			if cfg != nil {
				t.Errorf("Parse returned a *Config along with errors")
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want Errors", err)
			}
			got := strings.Split(err.Error(), "\n")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Parse(%q) errors (-want +got):\n%s", tt.yaml, diff)
			}
		})
	}
}
