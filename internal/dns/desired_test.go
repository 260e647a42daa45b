package dns

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/labgate/labgate/internal/config"
)

func parse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := parseConfig(yaml)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

func parseConfig(yaml string) (*config.Config, error) {
	return config.Parse("lab.yaml", []byte(yaml), config.Options{Getenv: func(string) (string, bool) { return "", false }})
}

const labYAML = `version: 1
domain: example.org
dns:
  provider: {type: cloudflare, api_token: t, proxied: true}
  flatten: %s
relay: {name: relay, public_ips: [203.0.113.7, "2001:db8::7"], gateway: 100.101.102.103}
gateway:
  public: {https: "100.101.102.103:10443", trusted_relays: [100.90.0.1]}
  private: {https: ["100.101.102.103:443", "0.0.0.0:8443"], http: ["[fd7a::1]:80"]}
services:
  - {name: vault, host: vault, backend: "http://192.168.1.20:8080"}
  - {name: blog, host: blog, expose: public, backend: "http://192.168.1.21:8080"}
  - {name: apps, hosts: ["*.apps.example.org"], expose: public, backend: "http://192.168.1.22:8080"}
  - {name: mail, host: mail, expose: public, tcp: [{port: 25, backend: "192.168.1.30:25"}], backend: "http://192.168.1.30:80"}
  - {name: home, host: example.org, backend: "http://192.168.1.23:8080"}
  - {name: other, host: cloud.example.net, backend: "http://192.168.1.24:8080"}
`

func TestDesiredRecords(t *testing.T) {
	aaaa := func(name string, ips ...string) Record {
		return Record{Name: name, Type: "AAAA", TTL: 300, Values: ips}
	}
	proxied := func(r Record) Record { r.Proxied = true; return r }
	relay := []Record{a("relay.example.org", "203.0.113.7"), aaaa("relay.example.org", "2001:db8::7")}
	priv := []Record{a("private-relay.example.org", "100.101.102.103"), aaaa("private-relay.example.org", "fd7a::1")}
	notes := []string{"cloud.example.net (service other): outside the zone example.org"}
	tests := []struct {
		name    string
		flatten string
		view    View
		want    []Record
	}{
		{
			name: "public view", flatten: "false", view: PublicView,
			want: []Record{
				proxied(a("*.apps.example.org", "203.0.113.7")), proxied(aaaa("*.apps.example.org", "2001:db8::7")),
				proxied(a("blog.example.org", "203.0.113.7")), proxied(aaaa("blog.example.org", "2001:db8::7")),
				a("example.org", "100.101.102.103"), aaaa("example.org", "fd7a::1"), // the apex cannot be a CNAME
				cname("mail.example.org", "relay.example.org"), // has tcp ports: never proxied
				priv[0], priv[1], relay[0], relay[1],
				cname("vault.example.org", "private-relay.example.org"),
			},
		},
		{
			name: "public view, flattened", flatten: "true", view: PublicView,
			want: []Record{
				proxied(a("*.apps.example.org", "203.0.113.7")), proxied(aaaa("*.apps.example.org", "2001:db8::7")),
				proxied(a("blog.example.org", "203.0.113.7")), proxied(aaaa("blog.example.org", "2001:db8::7")),
				a("example.org", "100.101.102.103"), aaaa("example.org", "fd7a::1"),
				a("mail.example.org", "203.0.113.7"), aaaa("mail.example.org", "2001:db8::7"),
				priv[0], priv[1], relay[0], relay[1],
				a("vault.example.org", "100.101.102.103"), aaaa("vault.example.org", "fd7a::1"),
			},
		},
		{
			name: "split view: every service at the private address", flatten: "false", view: SplitView,
			want: []Record{
				cname("*.apps.example.org", "private-relay.example.org"),
				cname("blog.example.org", "private-relay.example.org"),
				a("example.org", "100.101.102.103"), aaaa("example.org", "fd7a::1"),
				cname("mail.example.org", "private-relay.example.org"),
				priv[0], priv[1], relay[0], relay[1],
				cname("vault.example.org", "private-relay.example.org"),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := parse(t, fmt.Sprintf(labYAML, tt.flatten))
			got := DesiredRecords(cfg, tt.view)
			if diff := cmp.Diff(Desired{Zone: "example.org", Records: tt.want, Notes: notes}, got); diff != "" {
				t.Errorf("DesiredRecords (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDesiredRecordsNotes(t *testing.T) {
	cfg := parse(t, `version: 1
domain: example.org
dns: {zone: lab.example.org}
gateway:
  private: {https: ["0.0.0.0:443"]}
services:
  - {name: vault, host: vault.lab.example.org, backend: "http://192.168.1.20:8080"}
  - {name: blog, host: blog.lab.example.org, expose: public, backend: "http://192.168.1.21:8080"}
`)
	got := DesiredRecords(cfg, PublicView)
	want := Desired{Zone: "lab.example.org", Records: []Record{cname("vault.lab.example.org", "private-relay.example.org")}, Notes: []string{
		"private-relay.example.org (private name): the private listeners have no specific IP address; set gateway.private.address",
		"private-relay.example.org (private name): outside the zone lab.example.org",
		"blog.lab.example.org (service blog): nothing to point at (no relay section)",
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DesiredRecords (-want +got):\n%s", diff)
	}
}

// The public status page's host is published like a public service's: a
// CNAME to the relay, so the page and its badges are reachable from outside.
func TestDesiredRecordsStatusPage(t *testing.T) {
	cfg := parse(t, `version: 1
domain: example.org
relay: {name: relay, public_ips: [203.0.113.7], gateway: 100.101.102.103}
gateway:
  public: {https: "100.101.102.103:10443", trusted_relays: [100.90.0.1]}
  private: {https: ["100.101.102.103:443"]}
status: {public: {host: status}}
services:
  - {name: vault, host: vault, backend: "http://192.168.1.20:8080"}
`)
	got := DesiredRecords(cfg, PublicView)
	want := Desired{Zone: "example.org", Records: []Record{
		a("private-relay.example.org", "100.101.102.103"),
		a("relay.example.org", "203.0.113.7"),
		cname("status.example.org", "relay.example.org"),
		cname("vault.example.org", "private-relay.example.org"),
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DesiredRecords (-want +got):\n%s", diff)
	}
}
