package l4

import (
	"testing"

	"github.com/labgate/labgate/internal/config"
)

// TestPassthroughClass: on a public listener a private passthrough host is
// not forwarded, not even to a public wildcard service that covers its
// name; the private listener forwards both.
func TestPassthroughClass(t *testing.T) {
	pt := func(name string, expose config.Class, host string) *config.Service {
		return &config.Service{Name: name, Expose: expose, Hosts: []string{host}, Passthrough: &config.Passthrough{Backend: "127.0.0.1:1"}}
	}
	r, err := New(&config.Config{Services: []*config.Service{
		pt("apps", config.Public, "*.apps.lab.test"),
		pt("secret", config.Private, "secret.apps.lab.test"),
		pt("vault", config.Private, "vault.lab.test"),
	}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, tc := range []struct {
		class config.Class
		sni   string
		want  string
	}{
		{config.Public, "x.apps.lab.test", "apps"},
		{config.Public, "secret.apps.lab.test", ""},
		{config.Public, "vault.lab.test", ""},
		{config.Private, "secret.apps.lab.test", "secret"},
		{config.Private, "x.apps.lab.test", "apps"},
		{config.Private, "vault.lab.test", "vault"},
	} {
		got := ""
		if s := r.passthroughFor(tc.class, tc.sni); s != nil {
			got = s.Name
		}
		if got != tc.want {
			t.Errorf("%s listener, SNI %s: %q, want %q", tc.class, tc.sni, got, tc.want)
		}
	}
	if !r.HasPassthrough(config.Public) || !r.HasPassthrough(config.Private) {
		t.Error("HasPassthrough")
	}
	r2, err := New(&config.Config{Services: []*config.Service{pt("vault", config.Private, "vault.lab.test")}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if r2.HasPassthrough(config.Public) {
		t.Error("a private passthrough service makes public listeners peek")
	}
}
