package daemon

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/labgate/labgate/internal/statefile"
)

// Damaged files in state_dir. Gateways run on small machines that lose
// power, and SD cards and cheap SSDs truncate or garble files. What can be
// rebuilt or lost (the alert state, the health history, the relay path
// measurements) is moved aside by its owner to NAME.damaged-<UTC time> and
// started afresh; the daemon then raises an alert that says what was lost
// and where the damaged copy is. The alert lasts until that copy is gone
// from state_dir (deleted, or kept elsewhere): the person who was told has
// looked. What cannot be rebuilt without risk (dns-owned.json, the internal
// CA, ACME storage) is never replaced: see docs/deploy.md.

// causeStatePrefix starts the cause of a damaged file's alert; the damaged
// copy's path in state_dir follows it.
const causeStatePrefix = "state/"

// stateCheckEvery is how often the alerts of damaged files are looked at,
// to end those whose copy was removed.
const stateCheckEvery = time.Minute

// stateDamaged reports that a file of state_dir was found damaged and moved
// aside to aside; lost says what went with it.
func (d *Daemon) stateDamaged(stateDir, aside, lost string) {
	rel, err := filepath.Rel(stateDir, aside)
	if err != nil || strings.HasPrefix(rel, "..") {
		rel = aside
	}
	file := filepath.ToSlash(strings.SplitN(rel, statefile.AsideSuffix, 2)[0])
	d.RaiseAlert(causeStatePrefix+filepath.ToSlash(rel),
		"state_dir/"+file+" was damaged: moved aside, started afresh",
		lost+"\nlabgate serves on. The damaged copy is kept at "+aside+
			" for you to inspect or delete; this alert ends once it is gone from state_dir.")
}

// clearStateAlerts ends the alerts of damaged files whose copy is no
// longer in stateDir.
func (d *Daemon) clearStateAlerts(stateDir string) {
	a := d.Alerts()
	if a == nil {
		return
	}
	open, err := a.Incidents()
	if err != nil {
		return
	}
	for cause := range open {
		rel, ok := strings.CutPrefix(cause, causeStatePrefix)
		if !ok {
			continue
		}
		path := filepath.FromSlash(rel)
		if !filepath.IsAbs(path) {
			path = filepath.Join(stateDir, path)
		}
		if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
			d.ClearAlert(cause)
		}
	}
}

// watchStateAlerts runs clearStateAlerts every stateCheckEvery until ctx
// is done.
func (d *Daemon) watchStateAlerts(ctx context.Context, stateDir string) {
	t := time.NewTicker(stateCheckEvery)
	defer t.Stop()
	for {
		d.clearStateAlerts(stateDir)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
