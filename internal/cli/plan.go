package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"time"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/daemon"
	"github.com/labgate/labgate/internal/dns"
)

// planSection prints one part of `labgate plan`. An error is printed by
// plan, which goes on with the next section and exits non-zero at the end.
type planSection struct {
	title string
	print func(ctx context.Context, cfg *config.Config, w io.Writer) error
}

// planSections are the sections of `labgate plan`, in order.
func planSections() []planSection {
	return []planSection{
		{"dns", planDNS},
		{"certificates", planCertificates},
		{"listeners", planListeners},
	}
}

func plan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("plan", stderr)
	path := fs.String("c", "", "config `file` to plan (nothing is changed)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usageError{"-c FILE is required"}
	}
	cfg, err := loadConfig(*path) // as serve and check read it: SOPS-encrypted files too
	if err == nil && cfg.Git != nil {
		g := cfg.Git
		return fmt.Errorf("%s follows %s (branch %s): its lab is the file %s of the repository; run plan on that file in a clone", *path, g.URL, g.Branch, g.Path)
	}
	if err == nil {
		err = daemon.Check(cfg)
	}
	var errs config.Errors
	if errors.As(err, &errs) {
		fmt.Fprintln(stderr, errs.Error())
		fmt.Fprintf(stderr, "%s: %d problem(s), nothing planned\n", *path, len(errs))
		return silentError{}
	}
	if err != nil {
		return err
	}
	return runPlan(ctx, cfg, planSections(), stdout, stderr)
}

// runPlan prints each section under its title; a failed section is reported
// on stderr and makes the whole plan fail, after the other sections.
func runPlan(ctx context.Context, cfg *config.Config, sections []planSection, stdout, stderr io.Writer) error {
	failed := 0
	for i, s := range sections {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stdout, "%s:\n", s.title)
		if err := s.print(ctx, cfg, stdout); err != nil {
			fmt.Fprintf(stdout, "  (failed, see the error)\n")
			fmt.Fprintf(stderr, "labgate plan: %s: %s\n", s.title, err)
			failed++
		}
	}
	if failed > 0 {
		return silentError{}
	}
	return nil
}

// planDNS prints the record changes a reconciliation would make now.
func planDNS(ctx context.Context, cfg *config.Config, w io.Writer) error {
	z, err := dns.NewZone(cfg, dns.ProviderOptions{HTTPClient: &http.Client{Timeout: 30 * time.Second}})
	if err != nil {
		return err
	}
	desired := dns.DesiredRecords(cfg, dns.PublicView)
	if z == nil {
		fmt.Fprintf(w, "  no provider (dns.provider): no records are managed; the zone %s would hold:\n", orDash(desired.Zone))
		for _, r := range desired.Records {
			fmt.Fprintf(w, "    %s\n", r)
		}
		printNotes(w, desired.Notes)
		return nil
	}
	fmt.Fprintf(w, "  zone %s on %s, owner %q\n", desired.Zone, z.Describe, z.Owner)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cs, err := z.Plan(ctx)
	if err != nil {
		return fmt.Errorf("cannot list the zone %s (%s), nothing planned: %w", desired.Zone, z.Describe, err)
	}
	for _, c := range cs.Changes {
		fmt.Fprintf(w, "  %s\n", c)
	}
	for _, c := range cs.Conflicts {
		fmt.Fprintf(w, "  conflict %s\n", c)
	}
	printNotes(w, desired.Notes)
	fmt.Fprintf(w, "  %d to create, %d to update, %d to delete, %d conflict(s), %d already right\n",
		cs.Count(dns.Create), cs.Count(dns.Update), cs.Count(dns.Delete), len(cs.Conflicts), cs.Unchanged)
	return nil
}

func printNotes(w io.Writer, notes []string) {
	for _, n := range notes {
		fmt.Fprintf(w, "  not managed: %s\n", n)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// planCertificates prints which certificates serve would obtain from the
// ACME CA, renew or keep, from what is stored in state_dir: the CA is not
// contacted.
func planCertificates(ctx context.Context, cfg *config.Config, w io.Writer) error {
	entries, err := daemon.PlanCertificates(cfg, time.Now())
	if err != nil {
		return err
	}
	a := cfg.TLS.ACME
	switch {
	case a == nil:
		fmt.Fprintf(w, "  no tls.acme: certificates come from labgate's internal CA in %s\n", filepath.Join(cfg.StateDir, "ca"))
		return nil
	case len(entries) == 0:
		fmt.Fprintf(w, "  no HTTPS service: no certificate is needed\n")
		return nil
	}
	how := "HTTP-01 or TLS-ALPN-01, answered by the gateway's listeners"
	if p := cfg.DNS.Provider; p != nil {
		how = "DNS-01, TXT records written through dns.provider (" + p.Type + ")"
	}
	fmt.Fprintf(w, "  ACME %s, %s; stored in %s\n", a.Directory, how, filepath.Join(cfg.StateDir, "acme"))
	counts := map[string]int{}
	for _, e := range entries {
		counts[string(e.Action)]++
		switch string(e.Action) {
		case "obtain":
			line := "  obtain " + e.Name
			if e.Reason != "" {
				line += " (" + e.Reason + ")"
			}
			fmt.Fprintln(w, line)
		case "renew":
			fmt.Fprintf(w, "  renew  %s, expires %s (%s)\n", e.Name, e.Expiry.UTC().Format(time.RFC3339), e.Reason)
		default:
			fmt.Fprintf(w, "  ok     %s, expires %s\n", e.Name, e.Expiry.UTC().Format(time.RFC3339))
		}
	}
	fmt.Fprintf(w, "  %d to obtain, %d to renew, %d ok\n", counts["obtain"], counts["renew"], counts["ok"])
	return nil
}

// planListeners prints the sockets serve would open.
func planListeners(ctx context.Context, cfg *config.Config, w io.Writer) error {
	for _, l := range daemon.Listeners(cfg) {
		fmt.Fprintf(w, "  %-7s %-24s %s\n", l.Proto, l.Addr, l.What)
	}
	return nil
}
