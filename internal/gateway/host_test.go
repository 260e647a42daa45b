package gateway

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/labgate/labgate/internal/config"
)

func TestNormalizeHost(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "example.org", "example.org"},
		{"upper case", "Example.ORG", "example.org"},
		{"port", "example.org:8443", "example.org"},
		{"trailing dot", "example.org.", "example.org"},
		{"trailing dot and port", "EXAMPLE.org.:443", "example.org"},
		{"ipv4", "192.0.2.1", "192.0.2.1"},
		{"ipv4 and port", "192.0.2.1:80", "192.0.2.1"},
		{"ipv6 bracketed", "[2001:DB8::1]", "2001:db8::1"},
		{"ipv6 bracketed with port", "[2001:db8::1]:443", "2001:db8::1"},
		{"ipv6 bare", "2001:db8::1", "2001:db8::1"},
		{"empty", "", ""},
		{"unclosed bracket", "[2001:db8::1", ""},
		{"junk after bracket", "[::1]x", ""},
		{"name in brackets", "[example.org]", ""},
		{"port not numeric", "example.org:https", ""},
		{"only dots", "...", ""},
		{"empty port", "example.org:", "example.org"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := normalizeHost(tt.in); got != tt.want {
				t.Errorf("normalizeHost(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestMatchHostAndPath(t *testing.T) {
	hosts := []struct {
		name, pattern, host string
		want                bool
	}{
		{"exact", "a.example.org", "a.example.org", true},
		{"exact other", "a.example.org", "b.example.org", false},
		{"wildcard one label", "*.example.org", "a.example.org", true},
		{"wildcard two labels", "*.example.org", "a.b.example.org", false},
		{"wildcard apex", "*.example.org", "example.org", false},
		{"wildcard empty label", "*.example.org", ".example.org", false},
		{"wildcard suffix only", "*.example.org", "aexample.org", false},
		{"empty host", "example.org", "", false},
	}
	for _, tt := range hosts {
		t.Run("host/"+tt.name, func(t *testing.T) {
			if got := matchHost(tt.pattern, tt.host); got != tt.want {
				t.Errorf("matchHost(%q, %q) = %v", tt.pattern, tt.host, got)
			}
		})
	}
	paths := []struct {
		name, prefix, path string
		want               bool
	}{
		{"root", "", "/anything", true},
		{"same", "/api", "/api", true},
		{"below", "/api", "/api/x", true},
		{"trailing slash", "/api", "/api/", true},
		{"not a segment", "/api", "/apix", false},
		{"shorter", "/api", "/ap", false},
		{"other", "/api", "/", false},
	}
	for _, tt := range paths {
		t.Run("path/"+tt.name, func(t *testing.T) {
			if got := matchPath(tt.prefix, tt.path); got != tt.want {
				t.Errorf("matchPath(%q, %q) = %v", tt.prefix, tt.path, got)
			}
		})
	}
}

func TestHasDotDot(t *testing.T) {
	for in, want := range map[string]bool{
		"/": false, "/a/b": false, "/a..b": false, "/..": true, "/a/../b": true, "/a/..": true,
		"/...": false, "/a/.../b": false, "..": true,
		"/a/..;/b": true, "/a/..;jsessionid=x/b": true, "/a/..\\b": true, `/a\..\b`: true, "/a;/b": false, "/a/.;/b": false,
		"/a/..x;/b": false, "/a\\b": false,
	} {
		if got := hasDotDot(in); got != want {
			t.Errorf("hasDotDot(%q) = %v, want %v", in, got, want)
		}
	}
}

// svc is a service of a route table test.
func svc(name, path string, expose config.Class, hosts ...string) *service {
	return &service{cfg: &config.Service{Name: name, Path: path, Expose: expose, Hosts: hosts}}
}

func TestTableLookup(t *testing.T) {
	services := []*service{
		svc("site", "/", config.Public, "example.org", "www.example.org"),
		svc("api", "/api", config.Public, "example.org"),
		svc("api-v2", "/api/v2/", config.Public, "example.org"),
		svc("admin", "/", config.Private, "admin.example.org"),
		svc("tenants", "/", config.Public, "*.apps.example.org"),
		svc("tenant-admin", "/admin", config.Private, "*.apps.example.org"),
		svc("special", "/", config.Public, "special.apps.example.org"),
		svc("internal", "/internal", config.Private, "example.org"),
		svc("ops", "/", config.Private, "ops.apps.example.org"),
	}
	tests := []struct {
		name  string
		class config.Class
		host  string
		path  string
		want  string // service name, "" for none
	}{
		{"root", config.Public, "example.org", "/", "site"},
		{"prefix", config.Public, "example.org", "/api/x", "api"},
		{"longest prefix", config.Public, "example.org", "/api/v2/users", "api-v2"},
		{"segment boundary", config.Public, "example.org", "/apix", "site"},
		{"second host", config.Public, "www.example.org", "/api", "site"},
		{"unknown host", config.Public, "nope.example.org", "/", ""},
		{"private on public", config.Public, "admin.example.org", "/", ""},
		{"private on private", config.Private, "admin.example.org", "/", "admin"},
		{"public on private", config.Private, "example.org", "/api", "api"},
		{"wildcard", config.Public, "a.apps.example.org", "/x", "tenants"},
		{"wildcard two labels", config.Public, "a.b.apps.example.org", "/", ""},
		// A private service's paths and names are not served on the
		// public listener by a public service that would match them
		// less well.
		{"wildcard private path on public", config.Public, "a.apps.example.org", "/admin", ""},
		{"wildcard private path on public, below", config.Public, "a.apps.example.org", "/admin/x", ""},
		{"beside a wildcard private path on public", config.Public, "a.apps.example.org", "/administrator", "tenants"},
		{"private path under a public prefix", config.Public, "example.org", "/internal/x", ""},
		{"private path under a public prefix on private", config.Private, "example.org", "/internal/x", "internal"},
		{"beside a private path", config.Public, "example.org", "/internals", "site"},
		{"private name under a public wildcard", config.Public, "ops.apps.example.org", "/", ""},
		{"private name under a public wildcard on private", config.Private, "ops.apps.example.org", "/", "ops"},
		{"wildcard private path on private", config.Private, "a.apps.example.org", "/admin/x", "tenant-admin"},
		{"exact beats wildcard", config.Public, "special.apps.example.org", "/", "special"},
		{"wildcard behind exact host's paths", config.Private, "special.apps.example.org", "/admin", "special"},
	}
	tables := map[config.Class]*table{
		config.Public:  newTable(services, config.Public),
		config.Private: newTable(services, config.Private),
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := tables[tt.class].lookup(tt.host, tt.path)
			got := ""
			if r != nil && !r.denied {
				got = r.svc.cfg.Name
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("lookup(%s, %q, %q) (-want +got):\n%s", tt.class, tt.host, tt.path, diff)
			}
		})
	}
}

func FuzzNormalizeHost(f *testing.F) {
	for _, s := range []string{"example.org", "Example.ORG.:443", "[2001:db8::1]:8443", "2001:db8::1", "[", "a:b", "...", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		h := normalizeHost(in)
		if normalizeHost(h) != h && !strings.Contains(h, ":") {
			t.Fatalf("not idempotent: %q -> %q -> %q", in, h, normalizeHost(h))
		}
		if strings.ContainsAny(h, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
			t.Fatalf("%q -> %q is not lower case", in, h)
		}
		if strings.HasSuffix(h, ".") {
			t.Fatalf("%q -> %q keeps a trailing dot", in, h)
		}
		if strings.ContainsAny(h, "[]") && h != "" && strings.HasPrefix(in, "[") {
			t.Fatalf("%q -> %q keeps brackets", in, h)
		}
		if !strings.Contains(lowerASCII(in), h) {
			t.Fatalf("%q -> %q is not part of the input", in, h)
		}
	})
}

// FuzzMatchHost checks the route table against the pure matcher: a host is
// routed to a service exactly when one of its patterns matches.
func FuzzMatchHost(f *testing.F) {
	for _, s := range []string{"a.example.org", "example.org", "A.Example.Org:443", "a.b.example.org", ".example.org", "x.private.example.org", "private.example.org."} {
		f.Add(s)
	}
	services := []*service{
		{cfg: &config.Service{Name: "apex", Path: "/", Expose: config.Public, Hosts: []string{"example.org"}}},
		{cfg: &config.Service{Name: "wild", Path: "/", Expose: config.Public, Hosts: []string{"*.example.org"}}},
		{cfg: &config.Service{Name: "private", Path: "/", Expose: config.Private, Hosts: []string{"private.example.org", "*.private.example.org"}}},
	}
	public := newTable(services, config.Public)
	f.Fuzz(func(t *testing.T, in string) {
		h := normalizeHost(in)
		r, _ := public.lookup(h, "/")
		// The best match over every service (exact hosts before
		// wildcards), refused when it is private.
		var want *service
		for _, wild := range []bool{false, true} {
			for _, s := range services {
				for _, p := range s.cfg.Hosts {
					if strings.HasPrefix(p, "*.") == wild && matchHost(p, h) && want == nil {
						want = s
					}
				}
			}
		}
		if want != nil && want.cfg.Expose != config.Public {
			want = nil
		}
		var got *service
		if r != nil && !r.denied {
			got = r.svc
		}
		if got != want {
			t.Fatalf("host %q (%q): table routes to %v, matcher says %v", in, h, got, want)
		}
		if got != nil && got.cfg.Expose != config.Public {
			t.Fatalf("host %q reached private service %s on the public table", in, got.cfg.Name)
		}
	})
}

// TestTableServes: which names public listeners present a certificate for.
func TestTableServes(t *testing.T) {
	services := []*service{
		svc("site", "/", config.Public, "example.org"),
		svc("internal", "/internal", config.Private, "example.org"),
		svc("admin", "/", config.Private, "admin.example.org"),
		svc("mixed-api", "/api", config.Public, "mixed.example.org"),
		svc("mixed", "/", config.Private, "mixed.example.org"),
		svc("tenants", "/", config.Public, "*.apps.example.org"),
		svc("ops", "/", config.Private, "ops.apps.example.org"),
		svc("beside", "/admin", config.Private, "beside.apps.example.org"),
		svc("lan", "/", config.Private, "*.in.example.org"),
	}
	pub, priv := newTable(services, config.Public), newTable(services, config.Private)
	for host, want := range map[string]bool{
		"example.org":             true,  // public, with a private path
		"admin.example.org":       false, // private only
		"mixed.example.org":       true,  // private, but /api is public
		"a.apps.example.org":      true,  // public wildcard
		"ops.apps.example.org":    false, // private name under a public wildcard
		"beside.apps.example.org": true,  // only /admin is private: the wildcard serves the rest
		"x.in.example.org":        false, // private wildcard
		"nope.example.org":        false,
		"":                        false,
	} {
		if got := pub.serves(host); got != want {
			t.Errorf("public serves(%q) = %v, want %v", host, got, want)
		}
		if got, want := priv.serves(host), host != "" && host != "nope.example.org"; got != want {
			t.Errorf("private serves(%q) = %v, want %v", host, got, want)
		}
	}
}
