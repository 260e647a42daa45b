package daemon

import (
	"fmt"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/dns"
)

// DNS alerts outlive a restart. With a config that manages no DNS records
// nothing will ever end them, so a reload (or the start) resolves them; and
// the first successful reconciliation of a new process resolves them,
// though its reconciler tells no recovery of failures it never saw.
func TestDNSAlertsEnd(t *testing.T) {
	h := newHook(t, "k")
	alerts := fmt.Sprintf("alerts:\n  ops: { webhook: { url: %q, secret: k } }\n", h.srv.URL)
	l := startLabWith(t, false, alerts)

	l.d.RaiseAlert(causeDNS, "DNS records of lab.test not reconciled", "provider answered 500")
	l.d.RaiseAlert(causeDNSConflicts, "1 DNS record(s) of lab.test left as they are: not labgate's", "www.lab.test A 192.0.2.1")
	waitFor(t, "two alerts", func() bool { return len(h.messages()) >= 2 })

	// A reconciliation that failed ends nothing.
	l.d.settleDNSAlerts(dns.Status{Zone: "lab.test", Time: time.Now(), Err: "provider answered 500"}, []string{"www.lab.test"})
	// One that worked ends both (nothing in the way of www.lab.test).
	l.d.settleDNSAlerts(dns.Status{Zone: "lab.test", Time: time.Now()}, []string{"www.lab.test"})
	waitFor(t, "two resolves", func() bool { return len(h.messages()) >= 4 })
	if got := h.summary(); got != "firing:dns firing:dns/conflicts resolved:dns resolved:dns/conflicts" {
		t.Errorf("received %s", got)
	}

	// The lab's file manages no DNS records: a reload ends what is raised.
	l.d.RaiseAlert(causeDNS, "DNS records of lab.test not reconciled", "provider answered 500")
	waitFor(t, "the alert", func() bool { return len(h.messages()) >= 5 })
	l.write(fmt.Sprintf(labConfig, l.backend["www"].URL, l.backend["vault"].URL) + alerts + "alerting: { reminder: 1h }\n")
	if !l.d.Reload() {
		t.Fatalf("reload refused\n%s", l.logs)
	}
	waitFor(t, "its resolve", func() bool { return len(h.messages()) >= 6 })
	if m := h.messages()[5]; m.Kind != "resolved" || m.Cause != causeDNS {
		t.Errorf("after the reload: %s:%s", m.Kind, m.Cause)
	}
}
