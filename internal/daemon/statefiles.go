package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/labgate/labgate/internal/certs"
	"github.com/labgate/labgate/internal/config"
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
	file, _, _ := statefile.Aside(filepath.ToSlash(rel))
	d.RaiseAlert(causeStatePrefix+filepath.ToSlash(rel),
		"state_dir/"+file+" was damaged: moved aside, started afresh",
		lost+"\nlabgate serves on. The damaged copy is kept at "+aside+
			" for you to inspect or delete; this problem ends once it is gone from state_dir.")
}

// clearStateAlerts ends the alerts of damaged files whose copy is no
// longer in stateDir. Only those of copies moved aside (stateDamaged): the
// alerts of what is kept in place (the internal CA, an ACME account) ask
// the user to restore or move a file and then reload or restart, and a
// path that is gone does not say that has happened; their owners end them
// once the file serves again (caSource, acmeStorageDamage).
func (d *Daemon) clearStateAlerts(stateDir string) {
	for cause := range d.openCauses() {
		rel, ok := strings.CutPrefix(cause, causeStatePrefix)
		if !ok || !statefile.IsAside(rel) {
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

// watchStateAlerts runs clearStateAlerts on the state_dir of the config
// that serves every stateCheckEvery until ctx is done.
func (d *Daemon) watchStateAlerts(ctx context.Context) {
	t := time.NewTicker(stateCheckEvery)
	defer t.Stop()
	for {
		if cfg := d.status.cfg.Load(); cfg != nil {
			d.clearStateAlerts(cfg.StateDir)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// causeCA is the alert of an internal CA that cannot be used.
const causeCA = "state/ca"

// caSource is the certificate source of a generation without ACME: the
// internal CA's issuer. A CA that cannot be used (root.key or root.crt
// damaged, one of them missing, the root expired) is never replaced: a new
// root would break every device that trusts the old one. The gateway then
// serves all it can without it (plain HTTP, layer-4 and passthrough
// services, the status page, health checks and alerts), TLS handshakes on
// its HTTPS listeners fail, and an alert says how to restore the CA or
// start a new one. A CA labgate may not read (its owner or mode) is not
// damaged: the alert says so, and not to start a new one. The next reload
// tries the CA again.
func (d *Daemon) caSource(cfg *config.Config) certs.Source {
	ca, err := d.ca(cfg.StateDir)
	if err == nil {
		if d.openCauses()[causeCA] {
			d.ClearAlert(causeCA)
		}
		return ca.Issuer(certNames(cfg))
	}
	dir := filepath.Join(cfg.StateDir, "ca")
	what := fmt.Sprintf("HTTPS is not served until you restore %s from a backup and reload (SIGHUP), "+
		"or move %s aside to create a new CA: every device that trusts the old root must then trust the new one (%s).",
		dir, dir, filepath.Join(dir, "root.crt"))
	if errors.Is(err, fs.ErrPermission) {
		what = fmt.Sprintf("HTTPS is not served until the user labgate runs as may read %s (its owner or mode) and you reload (SIGHUP). "+
			"The CA itself may be whole: do not move it aside, a new root would have to be trusted by every device again.", dir)
	}
	d.log.Error("labgate's internal CA cannot be used: "+what, "error", err)
	d.RaiseAlert(causeCA, "labgate's internal CA cannot be used: HTTPS is down", err.Error()+"\n"+what)
	return noCertificate{err: fmt.Errorf("%w: no certificate is issued", err)}
}

// noCertificate is the source of a generation whose CA cannot be used:
// every TLS handshake fails with its error.
type noCertificate struct{ err error }

func (n noCertificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return nil, n.err
}

// acmeStorageDamage reports what the ACME source found damaged in its
// storage: a certificate moved aside (obtained again) like any damaged
// file, a damaged account (kept) with what to do about it. Account alerts
// of a previous start whose file is whole now end.
func (d *Daemon) acmeStorageDamage(stateDir string, damage []certs.StorageDamage) {
	current := map[string]bool{}
	for _, dm := range damage {
		if dm.Aside != "" {
			d.stateDamaged(stateDir, dm.Aside, fmt.Sprintf("%s was damaged (%v). Nothing is lost: a new certificate is obtained from the CA (one order).", dm.Path, dm.Err))
			continue
		}
		rel, err := filepath.Rel(stateDir, dm.Path)
		if err != nil {
			rel = dm.Path
		}
		cause := causeStatePrefix + filepath.ToSlash(rel)
		current[cause] = true
		title := "state_dir/" + filepath.ToSlash(rel) + " is damaged: no certificate can be obtained or renewed"
		if dm.Unreadable {
			title = "state_dir/" + filepath.ToSlash(rel) + " cannot be read: no certificate can be obtained or renewed for it"
		}
		d.RaiseAlert(cause, title, fmt.Sprintf("%v\n%s", dm.Err, dm.Advice()))
	}
	for cause := range d.openCauses() {
		if rel, ok := strings.CutPrefix(cause, causeStatePrefix+"acme/"); ok && !current[cause] && !statefile.IsAside(rel) {
			d.ClearAlert(cause)
		}
	}
}
