package daemon

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/labgate/labgate/internal/alert"
	"github.com/labgate/labgate/internal/config"
)

// Only the alert of a copy moved aside ends when that copy is gone. The
// internal CA's and the ACME account's alerts say to restore a file or move
// it aside and then reload or restart: a path that is gone says nothing of
// whether HTTPS serves again or a new account was made, and their owners
// end them when it does.
func TestClearStateAlertsOnlyCopies(t *testing.T) {
	state := t.TempDir()
	mgr, err := alert.Open(alert.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mgr.Close() })
	mgr.Update(&config.Config{Alerts: []config.Receiver{{Name: "ops"}}})
	d := New(Options{Stderr: io.Discard})
	d.checks = &checks{alerts: mgr}

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
