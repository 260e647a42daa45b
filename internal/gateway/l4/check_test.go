package l4

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/labgate/labgate/internal/config"
)

// parse parses a lab.yaml made of the given gateway and services sections.
func parse(t *testing.T, gateway, services string) *config.Config {
	t.Helper()
	src := "version: 1\ndomain: example.org\n" + gateway + services
	cfg, err := config.Parse("lab.yaml", []byte(src), config.Options{Getenv: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatalf("parse:\n%s\n%v", src, err)
	}
	return cfg
}

// designGateway is DESIGN.md's gateway section plus a LAN address: public
// and private listeners share the VPN address.
const designGateway = `
gateway:
  public:
    https: 100.101.102.103:10443
    http: 100.101.102.103:10080
    trusted_relays: [100.90.0.1/32]
  private:
    https: [100.101.102.103:443, "192.168.1.5:443"]
    http: [100.101.102.103:80, "[fd00::5]:80"]
  admin: 127.0.0.1:9180
`

func TestListeners(t *testing.T) {
	tests := []struct {
		name     string
		gateway  string
		services string
		want     []Listener
	}{{
		name:    "public and private services",
		gateway: designGateway,
		services: `
services:
  - name: mail
    expose: public
    tcp:
      - { port: 25, backend: 192.168.1.30:25, proxy_protocol: v2 }
      - { port: 993, backend: 192.168.1.30:993, proxy_protocol: v1 }
  - name: ssh
    tcp:
      - { port: 22, backend: 192.168.1.40:22 }
  - name: web
    host: web
    backend: http://192.168.1.50:8080
`,
		want: []Listener{
			{config.Public, "tcp", "100.101.102.103:25", 25},
			{config.Private, "tcp", "100.101.102.103:25", 25},
			{config.Private, "tcp", "192.168.1.5:25", 25},
			{config.Private, "tcp", "[fd00::5]:25", 25},
			{config.Public, "tcp", "100.101.102.103:993", 993},
			{config.Private, "tcp", "100.101.102.103:993", 993},
			{config.Private, "tcp", "192.168.1.5:993", 993},
			{config.Private, "tcp", "[fd00::5]:993", 993},
			{config.Private, "tcp", "100.101.102.103:22", 22},
			{config.Private, "tcp", "192.168.1.5:22", 22},
			{config.Private, "tcp", "[fd00::5]:22", 22},
		},
	}, {
		name: "separate public address, wildcard private",
		gateway: `
gateway:
  public:
    https: 100.101.102.104:443
    trusted_relays: [100.90.0.1/32]
  private:
    https: [":8443"]
`,
		services: `
services:
  - name: mqtt
    expose: public
    tcp:
      - { port: 8883, backend: 192.168.1.30:8883 }
    udp:
      - { port: 1883, backend: 192.168.1.30:1883 }
`,
		want: []Listener{
			{config.Public, "tcp", "100.101.102.104:8883", 8883},
			{config.Private, "tcp", ":8883", 8883},
			{config.Public, "udp", "100.101.102.104:1883", 1883},
			{config.Private, "udp", ":1883", 1883},
		},
	}, {
		name: "no private listeners",
		gateway: `
gateway:
  public:
    https: 100.101.102.104:10443
    trusted_relays: [100.90.0.1/32]
`,
		services: `
services:
  - name: mail
    expose: public
    tcp:
      - { port: 25, backend: 192.168.1.30:25 }
  - name: ssh
    tcp:
      - { port: 22, backend: 192.168.1.40:22 }
`,
		want: []Listener{{config.Public, "tcp", "100.101.102.104:25", 25}},
	}, {
		name:    "no tcp services",
		gateway: designGateway,
		services: `
services:
  - name: web
    host: web
    backend: http://192.168.1.50:8080
`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Listeners(parse(t, tt.gateway, tt.services))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Listeners (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name     string
		gateway  string
		services string
		want     []string // config.Error strings, in order
	}{{
		name:    "the design file is fine",
		gateway: designGateway,
		services: `
services:
  - name: mail
    expose: public
    tcp:
      - { port: 25, backend: 192.168.1.30:25, proxy_protocol: v2 }
      - { port: 993, backend: 192.168.1.30:993, proxy_protocol: v2 }
`,
	}, {
		name:    "a tcp port on an HTTP listener's address",
		gateway: designGateway,
		services: `
services:
  - name: git
    tcp:
      - { port: 80, backend: 192.168.1.30:22 }
  - name: relayed
    expose: public
    tcp:
      - { port: 10443, backend: 192.168.1.30:443 }
  - name: admin-elsewhere # 127.0.0.1:9180 is not a private listener host
    tcp:
      - { port: 9180, backend: 192.168.1.30:9180 }
`,
		want: []string{
			`lab.yaml:17:17: services[0].tcp[0].port: tcp port 80 collides with gateway.private.http[0] (100.101.102.103:80), which listens on the same address: pick another port`,
			`lab.yaml:17:17: services[0].tcp[0].port: tcp port 80 collides with gateway.private.http[1] ([fd00::5]:80), which listens on the same address: pick another port`,
			`lab.yaml:21:17: services[1].tcp[0].port: tcp port 10443 collides with gateway.public.https[0] (100.101.102.103:10443), which listens on the same address: pick another port`,
		},
	}, {
		name: "a wildcard host collides with every host",
		gateway: `
gateway:
  public:
    https: 100.101.102.104:10443
    trusted_relays: [100.90.0.1/32]
  private:
    https: ["0.0.0.0:443"]
  admin: 127.0.0.1:9180
`,
		services: `
services:
  - name: metrics-clash
    tcp:
      - { port: 9180, backend: 192.168.1.30:9180 }
  - name: public-clash
    expose: public
    tcp:
      - { port: 10443, backend: 192.168.1.30:10443 }
`,
		want: []string{
			`lab.yaml:15:17: services[0].tcp[0].port: tcp port 9180 collides with gateway.admin (127.0.0.1:9180), which listens on the same address: pick another port`,
			`lab.yaml:19:17: services[1].tcp[0].port: tcp port 10443 collides with gateway.public.https[0] (100.101.102.104:10443), which listens on the same address: pick another port`,
		},
	}, {
		name: "public tcp without gateway.public",
		gateway: `
gateway:
  private:
    https: [100.101.102.103:443]
`,
		services: `
services:
  - name: mail
    expose: public
    tcp:
      - { port: 25, backend: 192.168.1.30:25, proxy_protocol: v2 }
    udp:
      - { port: 3478, backend: 192.168.1.30:3478 }
  - name: ssh
    tcp:
      - { port: 22, backend: 192.168.1.40:22 }
`,
		want: []string{
			`lab.yaml:12:9: services[0].tcp[0]: public tcp port 25, but there is no gateway.public: the relay would not forward it: add gateway.public (or set expose: private)`,
			`lab.yaml:14:9: services[0].udp[0]: public udp port 3478, but there is no gateway.public: the relay would not forward it: add gateway.public (or set expose: private)`,
		},
	}, {
		name: "the relay's HTTP(S) ports",
		gateway: `
gateway:
  public:
    https: 100.101.102.104:10443
    trusted_relays: [100.90.0.1/32]
  private:
    https: [100.101.102.103:8443]
`,
		services: `
services:
  - name: imaps
    expose: public
    tcp:
      - { port: 443, backend: 192.168.1.30:443 }
      - { port: 80, backend: 192.168.1.30:80 }
  - name: private-443
    tcp:
      - { port: 8080, backend: 192.168.1.30:443 }
`,
		want: []string{
			`lab.yaml:15:17: services[0].tcp[0].port: public tcp port 443: the relay uses 80 and 443 for HTTP(S); pick another port (or set expose: private)`,
			`lab.yaml:16:17: services[0].tcp[1].port: public tcp port 80: the relay uses 80 and 443 for HTTP(S); pick another port (or set expose: private)`,
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := parse(t, tt.gateway, tt.services)
			err := Check(cfg)
			var got []string
			if err != nil {
				var errs config.Errors
				if !errors.As(err, &errs) {
					t.Fatalf("Check returned %T, want config.Errors: %v", err, err)
				}
				for _, e := range errs {
					got = append(got, e.Error())
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Check (-want +got):\n%s", diff)
			}
			// New refuses exactly what Check refuses.
			r, err := New(cfg, Options{})
			if (err != nil) != (len(tt.want) > 0) {
				t.Errorf("New: %v", err)
			}
			if r != nil {
				r.Close()
			}
		})
	}
}

// The same port in two services: config.Parse refuses it per protocol, and
// Check refuses it in a config built without Parse.
func TestCheckDuplicatePorts(t *testing.T) {
	src := "version: 1\n" + designGateway + `
services:
  - name: mail
    expose: public
    tcp: [{ port: 25, backend: 192.168.1.30:25 }]
    udp: [{ port: 25, backend: 192.168.1.30:25 }]
  - name: other
    tcp: [{ port: 25, backend: 192.168.1.31:25 }]
`
	_, err := config.Parse("lab.yaml", []byte(src), config.Options{})
	if err == nil || !strings.Contains(err.Error(), "services[1].tcp[0].port: tcp port 25 is already used by services[0].tcp[0]") ||
		strings.Contains(err.Error(), "udp") {
		t.Errorf("config.Parse: %v; want the second tcp 25 refused, udp 25 beside tcp 25 allowed", err)
	}

	cfg := &config.Config{Path: "lab.yaml", Services: []*config.Service{
		{Name: "mail", TCP: []config.L4Route{{Port: 25, Backend: "192.168.1.30:25"}}, UDP: []config.L4Route{{Port: 25, Backend: "192.168.1.30:25"}}},
		{Name: "other", TCP: []config.L4Route{{Port: 25, Backend: "192.168.1.31:25"}}},
	}}
	want := "lab.yaml: services[1].tcp[0].port: tcp port 25 is also used by services[0].tcp[0] (mail): a port forwards to one backend; pick another port"
	if err := Check(cfg); err == nil || err.Error() != want {
		t.Errorf("Check = %v\nwant %s", err, want)
	}
}
