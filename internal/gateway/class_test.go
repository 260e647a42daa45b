package gateway

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/labgate/labgate/internal/config"
)

// TestClassPrivatePaths: a private service at a path of a public service's
// host (app's /admin kept private), or at a name a public wildcard covers,
// is not reached on the public listener through the public service, even
// when both share a backend; the private listener serves it.
func TestClassPrivatePaths(t *testing.T) {
	be := startBackend(t, "shared")
	u := mustURL(t, be.URL)
	tg := newTestGateway(t, config.Limits{},
		&config.Service{Name: "app", Hosts: []string{"app.example.com"}, Expose: config.Public, Backends: []*url.URL{u}},
		&config.Service{Name: "app-admin", Hosts: []string{"app.example.com"}, Path: "/admin", Expose: config.Private, Backends: []*url.URL{u}},
		&config.Service{Name: "tenants", Hosts: []string{"*.example.com"}, Expose: config.Public, Backends: []*url.URL{u}},
		&config.Service{Name: "vault", Hosts: []string{"vault.example.com"}, Expose: config.Private, Backends: []*url.URL{u}},
	)
	pub := serveHandler(t, tg.Handler(config.Public)).URL
	priv := serveHandler(t, tg.Handler(config.Private)).URL
	c := newClient(t)
	for _, tc := range []struct {
		base, host, path string
		want             int
	}{
		{pub, "app.example.com", "/", http.StatusOK},
		{pub, "app.example.com", "/admin", http.StatusNotFound},
		{pub, "app.example.com", "/admin/users", http.StatusNotFound},
		{pub, "app.example.com", "/%61dmin/users", http.StatusNotFound},
		{pub, "app.example.com", "/administrator", http.StatusOK},
		{pub, "vault.example.com", "/", http.StatusNotFound},
		{pub, "other.example.com", "/", http.StatusOK},
		{priv, "app.example.com", "/admin/users", http.StatusOK},
		{priv, "vault.example.com", "/", http.StatusOK},
	} {
		r := do(t, c, "GET", tc.base+tc.path, tc.host, nil, nil)
		if r.Status != tc.want {
			class := "public"
			if tc.base == priv {
				class = "private"
			}
			t.Errorf("%s listener, %s%s: %d, want %d", class, tc.host, tc.path, r.Status, tc.want)
		}
	}
}
