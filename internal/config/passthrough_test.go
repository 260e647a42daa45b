package config

import (
	"strings"
	"testing"
)

func TestParsePassthrough(t *testing.T) {
	c, err := Parse("lab.yaml", []byte(`version: 1
domain: lab.test
services:
  - { name: pt, hosts: [pt, "*.apps.lab.test"], expose: public, passthrough: { backend: "192.168.1.40:443" } }
  - { name: pp, host: pp, passthrough: { backend: "nas.lan:8443", proxy_protocol: v2 } }
  - { name: web, host: web, echo: true }
`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	pt, pp, web := c.Services[0], c.Services[1], c.Services[2]
	if pt.Passthrough == nil || *pt.Passthrough != (Passthrough{Backend: "192.168.1.40:443"}) {
		t.Errorf("pt: %+v", pt.Passthrough)
	}
	if strings.Join(pt.Hosts, ",") != "pt.lab.test,*.apps.lab.test" || pt.Expose != Public || pt.HTTP() {
		t.Errorf("pt: hosts %v, expose %v, HTTP %v", pt.Hosts, pt.Expose, pt.HTTP())
	}
	if pp.Passthrough == nil || *pp.Passthrough != (Passthrough{Backend: "nas.lan:8443", ProxyProtocol: "v2"}) {
		t.Errorf("pp: %+v", pp.Passthrough)
	}
	if web.Passthrough != nil || !web.HTTP() {
		t.Errorf("web: %+v", web)
	}
}

func TestParsePassthroughErrors(t *testing.T) {
	tests := []struct {
		name, service, want string
	}{
		{"with a backend", `{ name: a, host: a, backend: "http://x:1", passthrough: { backend: "x:443" } }`,
			"services[0].passthrough: a passthrough service has no backend, backends, static or echo"},
		{"with echo", `{ name: a, host: a, echo: true, passthrough: { backend: "x:443" } }`,
			"services[0].passthrough: a passthrough service has no backend"},
		{"without host", `{ name: a, passthrough: { backend: "x:443" } }`,
			"services[0].passthrough: set host (or hosts)"},
		{"with a path", `{ name: a, host: a, path: /x, passthrough: { backend: "x:443" } }`,
			"services[0].path: a passthrough service takes whole hosts"},
		{"allow_http", `{ name: a, host: a, allow_http: true, passthrough: { backend: "x:443" } }`,
			"services[0].allow_http: a passthrough service is TLS only"},
		{"bad backend", `{ name: a, host: a, passthrough: { backend: "https://x" } }`,
			"services[0].passthrough.backend: \"https://x\""},
		{"missing backend", `{ name: a, host: a, passthrough: { proxy_protocol: v1 } }`,
			"services[0].passthrough.backend: missing (required)"},
		{"bad proxy_protocol", `{ name: a, host: a, passthrough: { backend: "x:443", proxy_protocol: v3 } }`,
			"services[0].passthrough.proxy_protocol: \"v3\" is not one of none, v1, v2"},
		{"host also served over HTTP", `{ name: a, host: a, passthrough: { backend: "x:443" } }
  - { name: b, host: a, path: /b, echo: true }`,
			"services[1]: a.lab.test is passed through by services[0]"},
		{"host passed through twice", `{ name: a, host: a, passthrough: { backend: "x:443" } }
  - { name: b, host: a, passthrough: { backend: "y:443" } }`,
			"services[1]: a.lab.test is already passed through by services[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("lab.yaml", []byte("version: 1\ndomain: lab.test\nservices:\n  - "+tt.service+"\n"), Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}
