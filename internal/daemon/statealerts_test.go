package daemon

import (
	"crypto/tls"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/alert"
	"github.com/labgate/labgate/internal/certs"
	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/statefile/damage"
	"github.com/labgate/labgate/internal/testpeer"
)

// Only the alert of a copy moved aside ends when that copy is gone. The
// internal CA's and the ACME account's alerts say to restore a file or move
// it aside and then reload or restart: a path that is gone says nothing of
// whether HTTPS serves again or a new account was made, and their owners
// end them when it does.
func TestClearStateAlertsOnlyCopies(t *testing.T) {
	state := t.TempDir()
	d, mgr := daemonWithAlerts(t)

	aside := filepath.Join(state, "history.db.damaged-20261126T020304Z")
	if err := os.WriteFile(aside, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.stateDamaged(state, aside, "lost")
	d.RaiseAlert(causeCA, "CA", "moved aside, not reloaded yet") // state_dir/ca is absent
	account := causeStatePrefix + "acme/acme/ca.example-directory/users/me@lab.test/me.key"
	d.RaiseAlert(account, "account", "moved aside, not restarted yet")

	open := func() map[string]alert.Incident {
		t.Helper()
		inc, err := mgr.Incidents()
		if err != nil {
			t.Fatal(err)
		}
		return inc
	}
	copyCause := causeStatePrefix + "history.db.damaged-20261126T020304Z"
	if got := open(); len(got) != 3 {
		t.Fatalf("open incidents %v, want the copy's, the CA's and the account's", got)
	}
	d.clearStateAlerts(state)
	if got := open(); len(got) != 3 {
		t.Errorf("open incidents %v: ended while nothing changed", got)
	}
	if err := os.Remove(aside); err != nil {
		t.Fatal(err)
	}
	d.clearStateAlerts(state)
	got := open()
	if _, ok := got[copyCause]; ok {
		t.Error("the alert of a removed copy did not end")
	}
	for _, cause := range []string{causeCA, account} {
		if _, ok := got[cause]; !ok {
			t.Errorf("%s ended because its path is absent", cause)
		}
	}
}

// An internal CA that labgate may not read (state_dir restored as root) is
// not damaged: the alert says to give labgate access, never to move the
// CA aside for a new root that every device would have to trust again.
func TestCAUnreadable(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	if _, err := certs.OpenCA(filepath.Join(state, "ca"), time.Now); err != nil {
		t.Fatal(err)
	}
	logs := &testpeer.Buffer{}
	d := New(Options{Stderr: logs})
	cfg := &config.Config{StateDir: state}
	var src certs.Source
	damage.Unreadable(t, state, filepath.Join(state, "ca", "root.key"), func() { src = d.caSource(cfg) })
	if _, err := src.GetCertificate(&tls.ClientHelloInfo{ServerName: "vault.lab.test"}); err == nil {
		t.Error("a certificate without the CA's key")
	}
	if log := logs.String(); !strings.Contains(log, "may read "+filepath.Join(state, "ca")) || strings.Contains(log, "to create a new CA") {
		t.Errorf("the log does not say to give labgate access, or says to start a new CA:\n%s", log)
	}
}

// What NewACME found in its storage becomes alerts: a certificate moved
// aside the alert of a copy (until the copy is gone), a damaged account
// one that says it is damaged, a file labgate may not read one that says
// so; a start that finds the account whole ends its alert.
func TestACMEStorageAlerts(t *testing.T) {
	state := t.TempDir()
	d, mgr := daemonWithAlerts(t)

	certDir := filepath.Join(state, "acme", "certificates", "ca", "www.lab.test")
	aside := certDir + ".damaged-20261126T020304Z"
	if err := os.MkdirAll(aside, 0o700); err != nil {
		t.Fatal(err)
	}
	account := filepath.Join(state, "acme", "acme", "ca", "users", "me@lab.test", "me.key")
	unreadable := filepath.Join(state, "acme", "certificates", "ca", "vault.lab.test", "vault.lab.test.key")
	d.acmeStorageDamage(state, []certs.StorageDamage{
		{Path: filepath.Join(certDir, "www.lab.test.crt"), Err: errors.New("cut"), Aside: aside},
		{Path: account, Err: errors.New("garbled")},
		{Path: unreadable, Err: fs.ErrPermission, Unreadable: true},
	})
	open, err := mgr.Incidents()
	if err != nil {
		t.Fatal(err)
	}
	rel := func(p string) string { r, _ := filepath.Rel(state, p); return causeStatePrefix + filepath.ToSlash(r) }
	for cause, title := range map[string]string{
		rel(aside):      "was damaged: moved aside",
		rel(account):    "is damaged",
		rel(unreadable): "cannot be read",
	} {
		if inc, ok := open[cause]; !ok || !strings.Contains(inc.Problem.Title, title) {
			t.Errorf("alert %s: %+v, want a title with %q", cause, inc.Problem, title)
		}
	}
	if len(open) != 3 {
		t.Errorf("%d alerts, want 3", len(open))
	}
	d.acmeStorageDamage(state, nil) // the next start finds the account whole
	open, _ = mgr.Incidents()
	if _, ok := open[rel(aside)]; !ok || len(open) != 1 {
		t.Errorf("open after a whole start: %v, want only the copy's", open)
	}
}

// daemonWithAlerts is a Daemon that runs nothing, with an alert manager
// that has a receiver, for the alerts it raises and ends.
func daemonWithAlerts(t *testing.T) (*Daemon, *alert.Manager) {
	t.Helper()
	mgr, err := alert.Open(alert.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mgr.Close() })
	mgr.Update(&config.Config{Alerts: []config.Receiver{{Name: "ops"}}})
	d := New(Options{Stderr: io.Discard})
	d.checks = &checks{alerts: mgr}
	return d, mgr
}
