package daemon

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// statusExtra adds a service whose backend is gone (an active check finds
// it down) and the public status page.
const statusExtra = `  - { name: gone, host: gone, backend: "http://127.0.0.1:1", health: { path: /, interval: 1s, timeout: 1s } }
status:
  title: Lab status
  public: { host: status }
`

func fetchStatus(t *testing.T, c *http.Client, url string, header ...string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		if strings.EqualFold(header[i], "Host") {
			req.Host = header[i+1]
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}

func TestStatusPage(t *testing.T) {
	l := startLabWith(t, false, statusExtra)
	adm := "http://" + l.addr(admin)
	c := &http.Client{Timeout: 10 * time.Second}

	// The check of "gone" fails within its first run.
	var api struct {
		Revision string `json:"revision"`
		Services []struct {
			Name, Class, State, Cause string
			LastCheck                 time.Time `json:"last_check"`
			Backends                  []struct{ Up bool }
		} `json:"services"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _, body := fetchStatus(t, c, adm+"/api/status")
		if code != 200 {
			t.Fatalf("/api/status = %d %s", code, body)
		}
		if err := json.Unmarshal([]byte(body), &api); err != nil {
			t.Fatal(err)
		}
		// The first sample into the history sets last_check.
		if len(api.Services) == 3 && api.Services[2].State == "down" && !api.Services[0].LastCheck.IsZero() || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	states := map[string]string{}
	for _, s := range api.Services {
		states[s.Name] = s.Class + "/" + s.State
	}
	want := map[string]string{"www": "public/up", "vault": "private/up", "gone": "private/down"}
	for n, w := range want {
		if states[n] != w {
			t.Errorf("service %s is %q, want %q", n, states[n], w)
		}
	}
	for _, s := range api.Services {
		if s.LastCheck.IsZero() {
			t.Errorf("service %s: no last check", s.Name)
		}
	}
	if !strings.HasPrefix(api.Revision, "sha256:") {
		t.Errorf("revision %q", api.Revision)
	}

	code, hdr, page := fetchStatus(t, c, adm+"/")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") {
		t.Fatalf("admin / = %d %s", code, hdr.Get("Content-Type"))
	}
	for _, s := range []string{"<title>Lab status</title>", `data-name="vault" data-state="up"`, `data-name="gone" data-state="down"`, "inside check http: connection refused", "vault.lab.test"} {
		if !strings.Contains(page, s) {
			t.Errorf("the admin page lacks %q", s)
		}
	}
	if code, hdr, body := fetchStatus(t, c, adm+"/badge/gone/state.svg"); code != 200 || hdr.Get("ETag") == "" || !strings.Contains(body, "gone: down") {
		t.Errorf("badge = %d etag %q %.100s", code, hdr.Get("ETag"), body)
	}
	// /metrics and /healthz stay what they were.
	if code, _, body := fetchStatus(t, c, adm+"/healthz"); code != 200 || !strings.HasPrefix(body, "ok") {
		t.Errorf("/healthz = %d %s", code, body)
	}

	// The public page, on a private and on a public listener (through a
	// relay's PROXY header): public services only.
	for name, cl := range map[string]*http.Client{
		"private": l.client(l.addr(privHTTPS), "", ""),
		"public":  l.client(l.addr(pubHTTPS), "127.0.0.1", "198.51.100.7"),
	} {
		code, _, page := fetchStatus(t, cl, "https://status.lab.test/")
		if code != 200 || !strings.Contains(page, `data-name="www"`) || strings.Contains(page, "vault") || strings.Contains(page, `data-name="gone"`) {
			t.Errorf("public page on the %s listener: %d\n%.2000s", name, code, page)
		}
		if code, _, _ := fetchStatus(t, cl, "https://status.lab.test/badge/www/state.svg"); code != 200 {
			t.Errorf("a public badge on the %s listener: %d", name, code)
		}
		if code, _, _ := fetchStatus(t, cl, "https://status.lab.test/api/services/vault"); code != 404 {
			t.Errorf("a private service in the public API on the %s listener: %d", name, code)
		}
		// Other hosts still reach their services.
		if code, s, _ := get(t, cl, "https://www.lab.test/x"); code != 200 || s.Service != "www" {
			t.Errorf("www on the %s listener after the status page: %d %+v", name, code, s)
		}
	}
	// Plain HTTP for the public page redirects to HTTPS.
	code, hdr, _ = fetchStatus(t, l.client(l.addr(privHTTP), "", ""), "http://status.lab.test/x?y=1")
	if code != http.StatusPermanentRedirect || !strings.HasPrefix(hdr.Get("Location"), "https://status.lab.test") || !strings.HasSuffix(hdr.Get("Location"), "/x?y=1") {
		t.Errorf("plain HTTP for the status page: %d %s", code, hdr.Get("Location"))
	}
}

// TestStatusImages serves a cached image from a local source named in the
// file, on the admin listener and, when marked public, on the public page.
func TestStatusImages(t *testing.T) {
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89")
	var hits atomic.Int32
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(png)
	}))
	t.Cleanup(src.Close)
	l := startLabWith(t, false, `status:
  public: { host: status }
  images:
    - { name: cpu, url: "`+src.URL+`/render?panelId=2", interval: 1m, public: true }
    - { name: internal, url: "`+src.URL+`/render?panelId=3" }
`)
	c := &http.Client{Timeout: 10 * time.Second}
	adm := "http://" + l.addr(admin)
	for range 3 {
		code, hdr, body := fetchStatus(t, c, adm+"/img/cpu")
		if code != 200 || hdr.Get("Content-Type") != "image/png" || body != string(png) || hdr.Get("ETag") == "" {
			t.Fatalf("/img/cpu = %d %s", code, hdr.Get("Content-Type"))
		}
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("%d fetches of a fresh image, want 1", n)
	}
	if code, _, _ := fetchStatus(t, c, adm+"/img/internal"); code != 200 {
		t.Errorf("/img/internal on the admin listener = %d", code)
	}
	pub := l.client(l.addr(privHTTPS), "", "")
	if code, _, _ := fetchStatus(t, pub, "https://status.lab.test/img/cpu"); code != 200 {
		t.Errorf("a public image on the public page = %d", code)
	}
	if code, _, _ := fetchStatus(t, pub, "https://status.lab.test/img/internal"); code != 404 {
		t.Errorf("an image not marked public on the public page = %d, want 404", code)
	}
}
