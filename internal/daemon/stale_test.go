package daemon

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// series returns the lines of the scrape m of the metric name whose labels
// contain every one of labels (`service="gone"`, say).
func series(m, name string, labels ...string) []string {
	var out []string
	for _, line := range strings.Split(m, "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		all := true
		for _, l := range labels {
			all = all && strings.Contains(line, l)
		}
		if all {
			out = append(out, line)
		}
	}
	return out
}

// A service whose backend is down, and a check, removed from the file take
// their gauges with them: the shipped LabgateBackendDown and
// LabgateServiceDown rules must stop firing for what no longer exists.
func TestReloadDeletesRemovedSeries(t *testing.T) {
	app := func(checks string) string {
		return "  - name: app\n    host: app\n    backend: %[1]q\n" +
			"    health: { interval: 1s, timeout: 1s, failures: 1, successes: 1, checks: [" + checks + "] }\n"
	}
	gone := `  - { name: gone, host: gone, backend: "http://127.0.0.1:1", health: { path: /, interval: 1s, timeout: 1s, failures: 1, successes: 1 } }` + "\n"
	bothChecks := `{ type: http, name: web }, { type: tcp, name: port }`
	l := startLabWith(t, false, "")
	www := l.backend["www"].URL
	l.write(fmt.Sprintf(labConfig, www, l.backend["vault"].URL) + fmt.Sprintf(app(bothChecks), www) + gone)
	if !l.d.Reload() {
		t.Fatalf("reload refused\n%s", l.logs)
	}
	waitLong(t, "gone down, app's checks run", func() bool {
		m := scrape(t, l.addr(admin))
		return len(series(m, "labgate_backend_up", `service="gone"`, "} 0")) == 1 &&
			len(series(m, "labgate_service_state", `service="gone"`, `state="down"`, "} 1")) == 1 &&
			len(series(m, "labgate_check_success", `service="app"`, `check="port"`, "} 1")) == 1 &&
			len(series(m, "labgate_check_success", `service="app"`, `check="web"`, "} 1")) == 1
	})

	l.write(fmt.Sprintf(labConfig, www, l.backend["vault"].URL) + fmt.Sprintf(app(`{ type: http, name: web }`), www))
	if !l.d.Reload() {
		t.Fatalf("reload refused\n%s", l.logs)
	}
	check := func(when string) {
		t.Helper()
		m := scrape(t, l.addr(admin))
		for _, s := range []struct {
			name   string
			labels []string
		}{
			{"labgate_backend_up", []string{`service="gone"`}},
			{"labgate_service_state", []string{`service="gone"`}},
			{"labgate_check_success", []string{`service="gone"`}},
			{"labgate_check_duration_seconds", []string{`service="gone"`}},
			{"labgate_check_success", []string{`check="port"`}},
			{"labgate_check_duration_seconds", []string{`check="port"`}},
		} {
			if got := series(m, s.name, s.labels...); len(got) > 0 {
				t.Errorf("%s: removed, still exported: %s", when, strings.Join(got, "; "))
			}
		}
		for _, s := range []struct {
			name   string
			labels []string
		}{
			{"labgate_backend_up", []string{`service="www"`, "} 1"}},
			{"labgate_backend_up", []string{`service="app"`, "} 1"}},
			{"labgate_service_state", []string{`service="app"`, `state="up"`, "} 1"}},
			{"labgate_check_success", []string{`service="app"`, `check="web"`}},
		} {
			if got := series(m, s.name, s.labels...); len(got) != 1 {
				t.Errorf("%s: %s{%s} not exported:\n%s", when, s.name, strings.Join(s.labels, ","), grep(m, s.name))
			}
		}
	}
	check("right after the reload")
	// The old generation drains, its checks of gone still failing
	// meanwhile: once it has stopped, it must not have exported them again.
	l.d.drains.Wait()
	check("after the old generation drained")
}

// The expiry of a certificate is no longer exported once its name leaves
// the file with tls.acme changed (a new ACME source), nor any once tls.acme
// is removed: LabgateCertificateExpiring must not fire for them.
func TestReloadDeletesRemovedCertExpiry(t *testing.T) {
	l := newACMELab(t, t.TempDir(), "www", "blog")
	l.start()
	l.served("www")
	l.served("blog")
	expiry := func() string { return grep(scrape(t, l.d.adminAddr()), "labgate_cert_expiry_timestamp_seconds{") }
	waitFor(t, "both expiry times", func() bool {
		m := expiry()
		return strings.Contains(m, `name="www.lab.test"`) && strings.Contains(m, `name="blog.lab.test"`)
	})
	rewrite := func(edit func(string) string) {
		t.Helper()
		b, err := os.ReadFile(l.file)
		if err != nil {
			t.Fatal(err)
		}
		tmp := l.file + ".tmp"
		if err := os.WriteFile(tmp, []byte(edit(string(b))), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, l.file); err != nil {
			t.Fatal(err)
		}
	}

	// Another account: a new ACME source, without blog.
	gen := l.d.generation()
	rewrite(func(s string) string {
		var out []string
		for _, line := range strings.Split(s, "\n") {
			if !strings.Contains(line, "name: blog") {
				out = append(out, strings.Replace(line, "admin@lab.test", "ops@lab.test", 1))
			}
		}
		return strings.Join(out, "\n")
	})
	waitFor(t, "the reload", func() bool { return l.d.generation() > gen })
	if n := strings.Count(l.logs.String(), "certificates come from ACME"); n != 2 {
		t.Fatalf("%d ACME sources made, want a second one for the new account", n)
	}
	l.served("www")
	waitFor(t, "blog's expiry gone, www's there", func() bool {
		m := expiry()
		return !strings.Contains(m, `name="blog.lab.test"`) && strings.Contains(m, `name="www.lab.test"`)
	})
	l.d.drains.Wait() // the old generation has drained and released its ACME source
	if m := expiry(); strings.Contains(m, `name="blog.lab.test"`) {
		t.Errorf("blog's expiry exported again after the drain:\n%s", m)
	}

	// No tls.acme: the internal CA serves, no expiry is exported.
	gen = l.d.generation()
	rewrite(func(s string) string {
		var out []string
		for _, line := range strings.Split(s, "\n") {
			if line != "tls:" && !strings.HasPrefix(line, "  acme:") {
				out = append(out, line)
			}
		}
		return strings.Join(out, "\n")
	})
	waitFor(t, "the reload without tls.acme", func() bool { return l.d.generation() > gen })
	if m := expiry(); m != "" {
		t.Errorf("expiry exported without tls.acme:\n%s", m)
	}
	l.d.drains.Wait()
	if m := expiry(); m != "" {
		t.Errorf("expiry exported again after the drain:\n%s", m)
	}
}
