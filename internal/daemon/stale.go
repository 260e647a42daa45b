package daemon

import "github.com/labgate/labgate/internal/certs"

// Series that describe what the file lists (a backend's up, a certificate's
// expiry) are deleted when a reload removes what they describe: otherwise a
// backend removed while down would read 0 forever and LabgateBackendDown
// would never resolve. The health monitor outlives generations and forgets
// removed services and checks itself (health.Monitor.Update). Counters of
// removed services stay: they only grow, rate() falls to 0 on its own, and
// increase() over a window that spans the reload keeps what was counted.

// retireSeries hands the gauges over to cur, the generation serving now
// (nil: none), from old, the one it replaced (nil: none; after a failed
// build, cur is the running one and old nil): old stops writing first, then
// every series cur does not have is deleted. cur's own series were set when
// it was built, and are kept.
func (d *Daemon) retireSeries(old, cur *generation) {
	if old != nil && old != cur {
		old.gw.Retire()
		if old.acme != nil && (cur == nil || cur.acme != old.acme) {
			old.acme.acme.Retire()
		}
	}
	if cur == nil {
		d.gwm.Retain(nil)
		d.certm.Retain(nil)
		return
	}
	d.gwm.Retain(cur.gw)
	var acme *certs.ACME
	if cur.acme != nil {
		acme = cur.acme.acme
	}
	d.certm.Retain(acme)
}
