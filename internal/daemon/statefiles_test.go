package daemon

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/labgate/labgate/internal/alert"
	"github.com/labgate/labgate/internal/certs"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/statefile/damage"
	"github.com/labgate/labgate/internal/testpeer"
)

// A gateway whose alerts.db and history.db were damaged by a power loss
// (each cut in half, as an SD card leaves them: bbolt faulted on such a
// file and serve died at every start) serves at once: both files are
// moved aside and kept, the log says what was lost and where the copies
// are, an alert says it too, and it ends once the copy is removed.
func TestServeWithDamagedState(t *testing.T) {
	state := ""
	damaged := map[string][]byte{}
	l, h, _ := startLabWithState(t, func(dir string) {
		state = dir
		for file, fixture := range map[string]string{
			"alerts/alerts.db": "../alert/testdata/serve-alerts.db",
			"history.db":       "../history/testdata/serve-history.db",
		} {
			good, err := os.ReadFile(fixture)
			if err != nil {
				t.Fatal(err)
			}
			damaged[file] = damage.Bolt(good)["half"]
			writeState(t, filepath.Join(state, filepath.FromSlash(file)), damaged[file])
		}
	})
	l.trustInternalCA()

	// It serves.
	resp, err := l.client(l.addr(privHTTPS), "", "").Get("https://vault.lab.test/")
	if err != nil {
		t.Fatalf("%v\n%s", err, l.logs)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("vault answered %d", resp.StatusCode)
	}
	if s := apiStatus(t, l.addr(admin)); s["vault"].State == "" {
		t.Errorf("the status API has no vault: %v", s)
	}

	// The damaged files are kept aside, named in the log and in alerts.
	asides := map[string]string{}
	for file, data := range damaged {
		matches, _ := filepath.Glob(filepath.Join(state, filepath.FromSlash(file)) + ".damaged-*")
		if len(matches) != 1 {
			t.Fatalf("%s: copies aside %v\n%s", file, matches, l.logs)
		}
		asides[file] = matches[0]
		if kept, err := os.ReadFile(matches[0]); err != nil || !bytes.Equal(kept, data) {
			t.Errorf("%s: the damaged copy is not kept as it was: %v", file, err)
		}
		if !strings.Contains(l.logs.String(), "damaged_copy="+matches[0]) {
			t.Errorf("the log does not name %s:\n%s", matches[0], l.logs)
		}
	}
	for _, want := range []string{"open incidents", "uptime and latency history is lost"} {
		if !strings.Contains(l.logs.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, l.logs)
		}
	}
	waitFor(t, "two alerts", func() bool { return len(h.messages()) >= 2 })
	for _, m := range h.messages() {
		rel, _ := filepath.Rel(state, asides[strings.TrimPrefix(strings.SplitN(m.Title, " ", 2)[0], "state_dir/")])
		if m.Kind != "firing" || m.Cause != causeStatePrefix+filepath.ToSlash(rel) || !strings.Contains(m.Detail, "lost") {
			t.Errorf("alert %+v", m)
		}
	}

	// The history copy is removed (looked at); a reload (or the minute's
	// check) ends its alert, and only its alert, the file unchanged
	// (systemctl reload, as docs/deploy.md says).
	if err := os.Remove(asides["history.db"]); err != nil {
		t.Fatal(err)
	}
	l.d.Reload()
	waitFor(t, "the resolve", func() bool { return len(h.messages()) >= 3 })
	time.Sleep(300 * time.Millisecond)
	relHist, _ := filepath.Rel(state, asides["history.db"])
	if got := h.messages(); len(got) != 3 || got[2].Kind != "resolved" || got[2].Cause != causeStatePrefix+relHist {
		t.Errorf("received %s, want the history's alert resolved", h.summary())
	}
}

// startLabWithState starts the lab of labConfig with an alert receiver,
// after seed wrote into its state_dir. cfg returns the file with more
// services.
func startLabWithState(t *testing.T, seed func(state string)) (l *lab, h *hook, cfg func(more string) string) {
	t.Helper()
	h = newHook(t, "k")
	l = &lab{t: t, dir: t.TempDir(), logs: &testpeer.Buffer{}, backend: map[string]*httptest.Server{}}
	l.backend["www"] = newBackend(t, "www")
	l.backend["vault"] = newBackend(t, "vault")
	l.file = filepath.Join(l.dir, "lab.yaml")
	cfg = func(more string) string {
		return fmt.Sprintf(labConfig, l.backend["www"].URL, l.backend["vault"].URL) + more +
			fmt.Sprintf("alerts:\n  ops: { webhook: { url: %q, secret: k } }\n", h.srv.URL)
	}
	l.write(cfg(""))
	seed(filepath.Join(l.dir, "state"))
	l.run(Options{
		Load:   func() (*config.Config, error) { return config.Load(l.file, config.Options{}) },
		Stderr: l.logs,
	}, 10*time.Second)
	t.Cleanup(l.stop)
	return l, h, cfg
}

func writeState(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A damaged internal CA is never replaced (a new root would break every
// device that trusts the old one): the gateway serves all it can without
// it, HTTPS handshakes fail, an alert says how to restore it, and a reload
// after the restore serves HTTPS again and ends the alert.
func TestServeWithDamagedCA(t *testing.T) {
	seed := t.TempDir()
	if _, err := certs.OpenCA(seed, time.Now); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"root.key", "root.crt"} {
		good, err := os.ReadFile(filepath.Join(seed, file))
		if err != nil {
			t.Fatal(err)
		}
		for how, data := range damage.File(good) {
			t.Run(file+"/"+how, func(t *testing.T) {
				var ca string
				l, h, _ := startLabWithState(t, func(state string) {
					ca = filepath.Join(state, "ca")
					if err := os.CopyFS(ca, os.DirFS(seed)); err != nil {
						t.Fatal(err)
					}
					writeState(t, filepath.Join(ca, file), data)
				})
				// HTTPS fails; plain HTTP, the admin listener and alerts work.
				if _, err := l.client(l.addr(privHTTPS), "", "").Get("https://vault.lab.test/"); err == nil {
					t.Error("HTTPS served with a damaged CA")
				}
				nofollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
				resp, err := nofollow.Get("http://" + l.addr(privHTTP) + "/")
				if err != nil {
					t.Fatalf("plain HTTP: %v", err)
				}
				resp.Body.Close()
				if s := apiStatus(t, l.addr(admin)); s["vault"].State == "" {
					t.Errorf("the status API has no vault: %v", s)
				}
				waitFor(t, "the alert", func() bool { return len(h.messages()) >= 1 })
				if m := h.messages()[0]; m.Cause != causeCA || !strings.Contains(m.Detail, "restore "+ca+" from a backup") || !strings.Contains(m.Detail, "move "+ca+" aside") {
					t.Errorf("alert %+v", m)
				}
				if !strings.Contains(l.logs.String(), "HTTPS is not served until you restore "+ca) {
					t.Errorf("the log does not say what to do:\n%s", l.logs)
				}
				if b, _ := os.ReadFile(filepath.Join(ca, file)); !bytes.Equal(b, data) {
					t.Errorf("%s was replaced", file)
				}
				if ents, _ := os.ReadDir(ca); len(ents) != 2 {
					t.Errorf("files in %s: %v", ca, ents)
				}

				// Restored from a backup, and reloaded with the file
				// unchanged (systemctl reload, as the alert says).
				writeState(t, filepath.Join(ca, file), good)
				if !l.d.Reload() {
					t.Fatalf("reload refused\n%s", l.logs)
				}
				l.trustInternalCA()
				resp, err = l.client(l.addr(privHTTPS), "", "").Get("https://vault.lab.test/")
				if err != nil {
					t.Fatalf("HTTPS after the restore: %v", err)
				}
				resp.Body.Close()
				waitFor(t, "the resolve", func() bool { return len(h.messages()) >= 2 })
				if got := h.summary(); got != "firing:state/ca resolved:state/ca" {
					t.Errorf("received %s", got)
				}
			})
		}
	}
}

// A damaged dns-owned.json is never replaced nor taken for an empty list:
// the gateway serves, no record is touched, the alert says how to restore
// it, and the restored file is picked up by the next attempt.
func TestServeWithDamagedDNSOwnership(t *testing.T) {
	b := testpeer.StartBIND(t, "lab.test")
	var owned string
	l, h, _ := startLabWithState(t, func(state string) {
		owned = filepath.Join(state, "dns-owned.json")
		writeState(t, owned, []byte(`{"zone": "lab.test", "owner": "labtest", "records": [{"name": "vault.lab.test", "ty`))
	})
	// The same lab, now with DNS: a reload applies it.
	reloadWithFileOwnership(t, l, b)
	waitFor(t, "the alert", func() bool { return len(h.messages()) >= 1 })
	m := h.messages()[0]
	if m.Cause != causeDNS || !strings.Contains(m.Detail, owned+" is damaged") || !strings.Contains(m.Detail, "restore it from a backup") {
		t.Errorf("alert %+v", m)
	}
	l.trustInternalCA()
	resp, err := l.client(l.addr(privHTTPS), "", "").Get("https://vault.lab.test/")
	if err != nil {
		t.Fatalf("%v\n%s", err, l.logs)
	}
	resp.Body.Close()
	if got := lookup(b.Addr, "vault.lab.test", dns.TypeCNAME); len(got) != 0 {
		t.Errorf("a record was written with a damaged ownership file: %v", got)
	}
	if !strings.HasSuffix(readFile(t, owned), `"ty`) {
		t.Error("the damaged ownership file was changed")
	}
	// Moved aside by the user to start over: labgate owns nothing, makes
	// its records, and the alert ends.
	if err := os.Rename(owned, owned+".bak"); err != nil {
		t.Fatal(err)
	}
	// A change of the file reconciles at once.
	l.write(strings.Replace(readFile(t, l.file), "services:\n", "services:\n  - { name: wiki, host: wiki, backend: \""+l.backend["vault"].URL+"\" }\n", 1))
	if !l.d.Reload() {
		t.Fatalf("reload refused\n%s", l.logs)
	}
	waitFor(t, "the resolve", func() bool { return strings.Contains(h.summary(), "resolved:dns") })
	if got := lookup(b.Addr, "vault.lab.test", dns.TypeCNAME); len(got) != 1 {
		t.Errorf("vault's record after starting over: %v", got)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A damaged relay-path.json is moved aside when the measurement starts,
// and an alert names the copy.
func TestServeWithDamagedRelayPath(t *testing.T) {
	var file string
	damaged := []byte(`{"version":1,"results":[{"time":"2026-11-26T01:00:00Z","rtt_sec`)
	l, h, _ := startLabWithState(t, func(state string) {
		file = filepath.Join(state, "relay-path.json")
		writeState(t, file, damaged)
	})
	speed := net.JoinHostPort("127.0.0.1", testpeer.FreePort(t, "127.0.0.1"))
	l.write(strings.Replace(readFile(t, l.file), "alerts:", fmt.Sprintf(`relay:
  public_ips: [203.0.113.7]
  gateway: 127.0.0.11
  speedtest: { listen: %q, interval: 1h }
alerts:`, speed), 1))
	if !l.d.Reload() {
		t.Fatalf("reload refused\n%s", l.logs)
	}
	waitFor(t, "the alert", func() bool { return len(h.messages()) >= 1 })
	asides, _ := filepath.Glob(file + ".damaged-*")
	if len(asides) != 1 {
		t.Fatalf("copies aside: %v", asides)
	}
	if b, _ := os.ReadFile(asides[0]); !bytes.Equal(b, damaged) {
		t.Error("the damaged copy is not kept as it was")
	}
	if m := h.messages()[0]; m.Cause != causeStatePrefix+filepath.Base(asides[0]) || !strings.Contains(m.Detail, asides[0]) {
		t.Errorf("alert %+v", m)
	}
	if !strings.Contains(l.logs.String(), "damaged_copy="+asides[0]) {
		t.Errorf("the log does not name the copy:\n%s", l.logs)
	}
}

// With dns.ownership: file, a conflict's alert says to delete the record:
// labgate reads no ownership TXT record in that mode, so an owner id given
// to the record would change nothing (after dns-owned.json was moved
// aside, every record labgate made is such a conflict).
func TestDNSConflictAdviceFileOwnership(t *testing.T) {
	b := testpeer.StartBIND(t, "lab.test", "vault IN A 192.0.2.9")
	l, h, _ := startLabWithState(t, func(string) {})
	reloadWithFileOwnership(t, l, b)
	var m alert.Message
	waitFor(t, "the conflict alert", func() bool {
		for _, got := range h.messages() {
			if got.Cause == causeDNSConflicts {
				m = got
				return true
			}
		}
		return false
	})
	if !strings.Contains(m.Detail, "vault.lab.test") || strings.Contains(m.Detail, "owner id") || !strings.Contains(m.Detail, "Delete the records from the zone") {
		t.Errorf("detail %q", m.Detail)
	}
}

// When the alert state cannot be opened, the file's receivers get nothing:
// the log of each problem says alerts are off, not that there are no
// receivers.
func TestProblemLogWithAlertsOff(t *testing.T) {
	l, _, _ := startLabWithState(t, func(state string) {
		writeState(t, filepath.Join(state, "alerts"), []byte("not a directory"))
		writeState(t, filepath.Join(state, "history.db"), []byte("garbled"))
	})
	logs := l.logs.String()
	if !strings.Contains(logs, "alerts are off") || !strings.Contains(logs, "history.db was damaged") {
		t.Fatalf("logs:\n%s", logs)
	}
	if strings.Contains(logs, "no alert receivers configured") {
		t.Errorf("the problem is logged as if the file had no receivers:\n%s", logs)
	}
}

// reloadWithFileOwnership adds BIND b as the lab's DNS provider, with
// dns.ownership: file, and reloads.
func reloadWithFileOwnership(t *testing.T, l *lab, b *testpeer.BIND) {
	t.Helper()
	l.write(strings.Replace(readFile(t, l.file), "alerts:", fmt.Sprintf(`relay: { public_ips: [203.0.113.7], gateway: 127.0.0.11 }
dns:
  provider: { type: rfc2136, server: %q, tsig_name: %q, tsig_secret: %q }
  owner: labtest
  ownership: file
  interval: 1h
alerts:`, b.Addr, b.KeyName, b.Secret), 1))
	if !l.d.Reload() {
		t.Fatalf("reload refused\n%s", l.logs)
	}
}
