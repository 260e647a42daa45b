package daemon

import (
	"fmt"
	"slices"
	"strings"

	"github.com/labgate/labgate/internal/certs"
	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/dns"
)

// Problems that are no one service's, as alerts: a certificate that cannot
// be obtained or renewed, DNS records that cannot be reconciled, and DNS
// records labgate may not write because something it does not own is in
// the way. They go to alerting.notify (every receiver when it is empty)
// through RaiseAlert, and resolve with the next success. The Options hooks
// (CertEvents, OnDNSEvent) are told first.

// Causes of the alerts raised here.
const (
	causeCertPrefix   = "cert/"         // + the certificate's name
	causeDNS          = "dns"           // reconciling fails
	causeDNSConflicts = "dns/conflicts" // records left as they are
)

// certEvent is the ACME source's OnEvent.
func (d *Daemon) certEvent(ev certs.Event) {
	if d.opts.CertEvents != nil {
		d.opts.CertEvents(ev)
	}
	cause := causeCertPrefix + ev.Name
	switch ev.Kind {
	case certs.Failed:
		what := "obtained"
		if ev.Renewal {
			what = "renewed"
		}
		detail := "labgate retries with a growing delay; the certificate in use, if any, is served until it expires."
		if ev.Err != nil {
			detail = ev.Err.Error() + "\n" + detail
		}
		d.RaiseAlert(cause, fmt.Sprintf("certificate for %s not %s", ev.Name, what), detail)
	case certs.Obtained, certs.Renewed:
		d.ClearAlert(cause)
	}
}

// dnsEvent is the DNS reconciler's OnEvent.
func (d *Daemon) dnsEvent(ev dns.Event) {
	if d.opts.OnDNSEvent != nil {
		d.opts.OnDNSEvent(ev)
	}
	switch ev.Kind {
	case dns.ReconcileFailed:
		detail := "labgate retries with a growing delay and changes nothing until the provider answers."
		if ev.Err != nil {
			detail = ev.Err.Error() + "\n" + detail
		}
		d.RaiseAlert(causeDNS, fmt.Sprintf("DNS records of %s not reconciled", ev.Zone), detail)
	case dns.ReconcileRecovered:
		d.ClearAlert(causeDNS)
	case dns.ConflictsChanged:
		if len(ev.Conflicts) == 0 {
			d.ClearAlert(causeDNSConflicts)
			return
		}
		lines := make([]string, len(ev.Conflicts))
		for i, c := range ev.Conflicts {
			lines[i] = c.String()
		}
		advice := "Remove the records, or give them labgate's owner id, to let labgate manage them."
		if d.dns.fileOwnership() {
			// No ownership TXT record is read in file mode: an owner id
			// given to the record would change nothing.
			advice = "Delete the records from the zone for labgate to create them (with dns.ownership: file, it owns only what dns-owned.json lists)."
		}
		d.RaiseAlert(causeDNSConflicts, fmt.Sprintf("%d DNS record(s) of %s left as they are: not labgate's", len(ev.Conflicts), ev.Zone),
			strings.Join(lines, "\n")+"\n"+advice)
	}
}

// clearStaleCertAlerts resolves the certificate alerts of names cfg no
// longer serves from ACME, and the DNS alerts when cfg manages no DNS
// records: nothing will ever succeed for them.
func (d *Daemon) clearStaleCertAlerts(cfg *config.Config) {
	open := d.openCauses() // openproblems.go
	if cfg.DNS.Provider == nil {
		for _, cause := range []string{causeDNS, causeDNSConflicts} {
			if open[cause] {
				d.ClearAlert(cause)
			}
		}
	}
	keep := map[string]bool{}
	if cfg.TLS.ACME != nil && needsTLS(cfg) {
		for _, n := range certNames(cfg) {
			keep[causeCertPrefix+n] = true
		}
	}
	for cause := range open {
		if strings.HasPrefix(cause, causeCertPrefix) && !keep[cause] {
			d.ClearAlert(cause)
		}
	}
}

// settleDNSAlerts resolves the DNS alerts that st, the outcome of a
// reconciliation, says are over. The reconciler's events end them, its
// first outcome included; this covers alerts that open after that outcome
// (receivers added to the file later), which would otherwise keep an
// incident of a previous run open.
func (d *Daemon) settleDNSAlerts(st dns.Status, hosts []string) {
	a := d.Alerts()
	if a == nil || st.Time.IsZero() || st.Err != "" {
		return
	}
	open, err := a.Incidents()
	if err != nil {
		return
	}
	if _, ok := open[causeDNS]; ok {
		d.ClearAlert(causeDNS)
	}
	if _, ok := open[causeDNSConflicts]; ok && !slices.ContainsFunc(hosts, func(h string) bool {
		state, _ := st.Host(h)
		return state == dns.HostConflict
	}) {
		d.ClearAlert(causeDNSConflicts)
	}
}

// dnsHosts are the names of cfg's services.
func dnsHosts(cfg *config.Config) []string {
	var out []string
	for _, s := range cfg.Services {
		out = append(out, s.Hosts...)
	}
	return out
}
