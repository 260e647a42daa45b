package daemon

import (
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/labgate/labgate/internal/alert"
	"github.com/labgate/labgate/internal/health"
	"github.com/labgate/labgate/internal/statefile"
	"github.com/labgate/labgate/internal/status"
)

// The open problems that are no one service's, for the admin status page:
// RaiseAlert and ClearAlert (health.go) feed them as they feed the alert
// manager, so the page and the alerts never disagree, and a lab without
// alert receivers sees them too. They live in memory and outlive
// generations, not the process: their owners raise them again at start
// (the ACME source and the DNS reconciler at their first failure, the
// internal CA and ACME storage with every generation), and the copies of
// damaged files that earlier runs moved aside are found again in
// state_dir (seedStateProblems).
//
// The broken relay path is the one incident of no one service that is not
// raised: the alert manager derives it from the health monitor's snapshot,
// and relayProblem derives it from the same snapshot, by the same rule, for
// the page.

// problemKinds are the values of labgate_problems' kind label: the part of
// a cause before its first slash. Any other is counted as "other".
func problemKinds() []string { return []string{"cert", "dns", "state"} }

// openProblems is the set of open problems by cause.
type openProblems struct {
	now   func() time.Time
	gauge *prometheus.GaugeVec

	mu   sync.Mutex
	open map[string]status.Problem
}

func newOpenProblems(reg prometheus.Registerer, now func() time.Time) *openProblems {
	p := &openProblems{now: now, open: map[string]status.Problem{},
		gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "labgate_problems",
			Help: "Open problems that are no one service's, by kind: cert (a certificate not obtained or renewed), dns (records not reconciled or left alone), state (a damaged file of state_dir), other. The admin status page and the alerts say what they are.",
		}, []string{"kind"}),
	}
	for _, k := range problemKinds() {
		p.gauge.WithLabelValues(k)
	}
	reg.MustRegister(p.gauge)
	return p
}

func problemKind(cause string) string {
	k, _, _ := strings.Cut(cause, "/")
	if !slices.Contains(problemKinds(), k) {
		return "other"
	}
	return k
}

// raise opens the problem of cause, or updates its title and detail; it
// reports whether it was not open.
func (p *openProblems) raise(cause, title, detail string) bool {
	return p.raiseSince(cause, title, detail, time.Time{})
}

// raiseSince is raise of a problem known to have begun at since (zero:
// now).
func (p *openProblems) raiseSince(cause, title, detail string, since time.Time) bool {
	now := p.now()
	if since.IsZero() || since.After(now) {
		since = now
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old, ok := p.open[cause]
	if ok {
		if old.Title != title || old.Detail != detail {
			old.Title, old.Detail, old.Changed = title, detail, now
			p.open[cause] = old
		}
		return false
	}
	p.open[cause] = status.Problem{Cause: cause, Title: title, Detail: detail, Since: since, Changed: since}
	p.count()
	return true
}

// clear ends the problem of cause, if it is open.
func (p *openProblems) clear(cause string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.open[cause]; ok {
		delete(p.open, cause)
		p.count()
	}
}

// count sets the gauge (p.mu is held).
func (p *openProblems) count() {
	n := map[string]int{}
	for c := range p.open {
		n[problemKind(c)]++
	}
	for _, k := range problemKinds() {
		p.gauge.WithLabelValues(k).Set(float64(n[k]))
	}
	if n["other"] > 0 {
		p.gauge.WithLabelValues("other").Set(float64(n["other"]))
	} else {
		p.gauge.DeleteLabelValues("other")
	}
}

// list returns the open problems, oldest first.
func (p *openProblems) list() []status.Problem {
	p.mu.Lock()
	out := make([]status.Problem, 0, len(p.open))
	for _, pr := range p.open {
		out = append(out, pr)
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b status.Problem) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return strings.Compare(a.Cause, b.Cause)
	})
	return out
}

func (p *openProblems) has(cause string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.open[cause]
	return ok
}

// openCauses are the causes open in the problem list or, from this run or
// an earlier one, in the alert state: what the checks that end problems
// (a certificate no longer served, a damaged copy removed) look at.
func (d *Daemon) openCauses() map[string]bool {
	open := map[string]bool{}
	d.problems.mu.Lock()
	for c := range d.problems.open {
		open[c] = true
	}
	d.problems.mu.Unlock()
	if a := d.Alerts(); a != nil {
		if incs, err := a.Incidents(); err == nil {
			for c := range incs {
				open[c] = true
			}
		}
	}
	return open
}

// seedStateProblems raises again, at start, the problems of the damaged
// copies that earlier runs moved aside and that are still in stateDir:
// their owners found the file whole this time and say nothing. The alert
// state's title and detail are taken when it has them (the alert lasts
// across restarts); otherwise what the copy's name tells.
func (d *Daemon) seedStateProblems(stateDir string) {
	// The git state this run moved aside before its first revision
	// applied: startGit tells it, with what it is, right after.
	fresh := map[string]bool{}
	if d.git != nil {
		for _, aside := range d.git.syncer.Damaged() {
			fresh[filepath.Clean(aside)] = true
		}
	}
	var alerts map[string]time.Time
	var texts map[string][2]string
	if a := d.Alerts(); a != nil {
		if incs, err := a.Incidents(); err == nil {
			alerts, texts = map[string]time.Time{}, map[string][2]string{}
			for c, inc := range incs {
				alerts[c], texts[c] = inc.Started, [2]string{inc.Problem.Title, inc.Problem.Detail}
			}
		}
	}
	_ = filepath.WalkDir(stateDir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return nil // unreadable: nothing to tell of it
		}
		original, at, aside := statefile.Aside(e.Name())
		if !aside {
			return nil
		}
		rel, err := filepath.Rel(stateDir, path)
		if err != nil {
			return nil
		}
		cause := causeStatePrefix + filepath.ToSlash(rel)
		if !d.problems.has(cause) && !fresh[filepath.Clean(path)] {
			if t, ok := texts[cause]; ok {
				d.problems.raiseSince(cause, t[0], t[1], alerts[cause])
			} else {
				file := filepath.ToSlash(filepath.Join(filepath.Dir(rel), original))
				d.raiseAlertSince(at, cause, "state_dir/"+file+" was damaged: moved aside, started afresh",
					"An earlier run of labgate found it damaged and started it afresh; what it held is lost. "+
						"The damaged copy is kept at "+path+" for you to inspect or delete; this problem ends once it is gone from state_dir.")
			}
		}
		if e.IsDir() {
			return filepath.SkipDir
		}
		return nil
	})
}

// causeRelay is the cause of the broken relay path, as the alert manager
// names its incident.
const causeRelay = alert.CauseRelay

// relayProblem is the broken relay path as the alert manager sees it in
// hs: the relay check is down, or services fail from outside because of
// it (their cause is health.CauseRelay).
func relayProblem(hs health.Snapshot) (status.Problem, bool) {
	title, cutOff, ok := alert.RelayBroken(hs)
	if !ok {
		return status.Problem{}, false
	}
	var since time.Time
	for _, s := range hs.Services {
		if slices.Contains(cutOff, s.Name) && (since.IsZero() || s.Since.Before(since)) {
			since = s.Since
		}
	}
	var lines []string
	if hs.Relay != nil {
		if !hs.Relay.FailingSince.IsZero() && (since.IsZero() || hs.Relay.FailingSince.Before(since)) {
			since = hs.Relay.FailingSince
		}
		if hs.Relay.LastError != "" {
			lines = append(lines, hs.Relay.LastError)
		}
	}
	lines = append(lines, "Public services cannot be reached from the internet; inside the lab they still answer. "+
		"Check that the VPN between this gateway and the relay is up (ping the relay's VPN address from here), "+
		"that labgate relay runs on the VPS (its log says why it refuses connections), and the relay path below.")
	if since.IsZero() {
		since = hs.Time
	}
	return status.Problem{Cause: causeRelay, Title: title, Detail: strings.Join(lines, "\n"), Since: since, Changed: since}, true
}
