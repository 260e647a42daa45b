// Package alert turns health states and other problems into notices to
// people, each delivered once, in order, even across restarts.
//
// Problems come from health snapshots (a service down or degraded, the
// relay path broken) and from the daemon (Raise: a certificate renewal or a
// DNS update failed). Each problem has a cause; one cause is one incident.
// Services cut off by a broken relay path are grouped under the cause
// "relay": one incident that names them all, not one per service. An
// incident's notices are: firing, update (its state or the services it
// affects changed), reminder (still firing after alerting.reminder) and
// resolved. Maintenance windows hold notices back; an incident that ends
// inside its window is never told.
//
// The decision is pure (evaluate); its result is written to a bbolt
// database in state_dir in the same transaction as the incidents it
// changes, one delivery per receiver. A notifier goroutine, apart from the
// checks, delivers the queue: in order per receiver, with retries and
// exponential backoff, and an idempotency key per message that stays the
// same across retries and restarts (Matrix txnId, webhook Idempotency-Key,
// email Message-ID). Matrix messages of one incident are edits of its
// first message.
package alert

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/health"
)

// Notice kinds.
const (
	Firing   = "firing"
	Update   = "update"
	Reminder = "reminder"
	Resolved = "resolved"
)

// CauseRelay groups the services a broken relay path cuts off.
const CauseRelay = "relay"

// Problem is something wrong now.
type Problem struct {
	Cause     string       `json:"cause"`
	Service   string       `json:"service,omitempty"` // "" when it is no one service's
	State     health.State `json:"state"`             // Down or Degraded
	Title     string       `json:"title"`
	Detail    string       `json:"detail,omitempty"`
	Services  []string     `json:"services,omitempty"` // the services it affects
	Receivers []string     `json:"receivers,omitempty"`
}

// Incident is one cause from its first problem to its resolution.
type Incident struct {
	ID uint64 `json:"id"`
	// Key prefixes the keys of its messages: unique to this database.
	Key        string    `json:"key,omitempty"`
	Problem    Problem   `json:"problem"`
	Started    time.Time `json:"started"`
	Notified   bool      `json:"notified"` // its firing notice went out
	LastNotice time.Time `json:"last_notice"`
	Notices    int       `json:"notices"` // notices so far: numbers each message's key
	// Told are the receivers sent a notice of it: they hear of its end even
	// if the config no longer routes it to them.
	Told []string `json:"told,omitempty"`
	// Said is the problem as its last notice told it: a change held back
	// by maintenance is told when the window ends.
	Said *Problem `json:"said,omitempty"`
}

// Notice is one message about an incident, and who receives it.
type Notice struct {
	Kind      string
	Incident  Incident // as of the notice
	Time      time.Time
	Receivers []string
}

// Settings are what evaluate needs from the config.
type Settings struct {
	Reminder    time.Duration
	Maintenance []config.Maintenance
	// GroupWait holds the first notice of a grouped incident (the relay's)
	// this long, so that it names every service the cause cut off.
	GroupWait time.Duration
}

// held reports whether maintenance holds back p's notices at now.
func (s Settings) held(now time.Time, p Problem) bool {
	services := p.Services
	if p.Service != "" {
		services = []string{p.Service}
	}
	for _, w := range s.Maintenance {
		if !w.Active(now) {
			continue
		}
		if len(w.Services) == 0 {
			return true
		}
		if len(services) > 0 && !slices.ContainsFunc(services, func(s string) bool { return !w.Covers(s) }) {
			return true
		}
	}
	return false
}

// evaluate decides, from the incidents open before and the problems now,
// the incidents open after and the notices to send. Causes in unknown are
// left as they are (nothing is known of them: never resolved, never
// fired). newID numbers new incidents.
func evaluate(now time.Time, open map[string]Incident, problems map[string]Problem, unknown map[string]bool,
	s Settings, newID func() uint64) (map[string]Incident, []Notice) {
	next := map[string]Incident{}
	var notices []Notice
	notify := func(kind string, inc *Incident) {
		inc.Notices++
		inc.LastNotice = now
		to := inc.Problem.Receivers
		if kind != Firing {
			to = union(inc.Told, to)
		}
		inc.Told = union(inc.Told, to)
		said := inc.Problem
		inc.Said = &said
		notices = append(notices, Notice{Kind: kind, Incident: *inc, Time: now, Receivers: to})
	}
	for _, cause := range sortedKeys(problems) {
		p := problems[cause]
		inc, ok := open[cause]
		held := s.held(now, p)
		switch {
		case !ok:
			inc = Incident{ID: newID(), Problem: p, Started: now}
			if !held && (p.Cause != CauseRelay || s.GroupWait <= 0) {
				inc.Notified = true
				notify(Firing, &inc)
			}
		case !inc.Notified:
			if p.Cause == CauseRelay {
				p.Services = union(inc.Problem.Services, p.Services)
				p.Title = relayTitle(p.Services)
			}
			inc.Problem = p
			waited := p.Cause != CauseRelay || now.Sub(inc.Started) >= s.GroupWait
			if !held && waited {
				inc.Notified = true
				notify(Firing, &inc)
			}
		default:
			if p.Cause == CauseRelay {
				// A group only grows while it lasts: services coming back
				// one by one are the end of the incident, told by its
				// resolution, not by updates.
				p.Services = union(inc.Problem.Services, p.Services)
				p.Title = relayTitle(p.Services)
			}
			said := inc.Problem
			if inc.Said != nil {
				said = *inc.Said
			}
			changed := said.State != p.State || said.Title != p.Title || !slices.Equal(said.Services, p.Services)
			inc.Problem = p
			switch {
			case held:
			case changed:
				notify(Update, &inc)
			case s.Reminder > 0 && now.Sub(inc.LastNotice) >= s.Reminder:
				notify(Reminder, &inc)
			}
		}
		next[cause] = inc
	}
	for _, cause := range sortedKeys(open) {
		inc := open[cause]
		if _, ok := problems[cause]; ok {
			continue
		}
		if unknown[cause] {
			next[cause] = inc
			continue
		}
		if inc.Notified {
			notify(Resolved, &inc)
		}
	}
	return next, notices
}

// union is the sorted union of a and b.
func union(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// RelayBroken reports whether snap shows the relay path broken, as one
// incident: the relay check is down, or services fail from outside because
// of it (their cause is health.CauseRelay). It returns the incident's
// title and the services it cuts off, sorted.
func RelayBroken(snap health.Snapshot) (title string, cutOff []string, ok bool) {
	for _, s := range snap.Services {
		if (s.State == health.Down || s.State == health.Degraded) && s.Cause == health.CauseRelay {
			cutOff = append(cutOff, s.Name)
		}
	}
	if len(cutOff) == 0 && (snap.Relay == nil || snap.Relay.State != health.Down) {
		return "", nil, false
	}
	slices.Sort(cutOff)
	return relayTitle(cutOff), cutOff, true
}

func relayTitle(services []string) string {
	if len(services) == 0 {
		return "relay path broken"
	}
	return "relay path broken: cuts off " + strings.Join(services, ", ")
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// routing says who is told about what: the receivers of each service and
// those of problems that are no one service's.
type routing struct {
	services map[string][]string
	notify   []string // alerting.notify, or every receiver
}

func newRouting(cfg *config.Config) routing {
	r := routing{services: map[string][]string{}, notify: cfg.Alerting.Notify}
	if len(r.notify) == 0 {
		for _, rc := range cfg.Alerts {
			r.notify = append(r.notify, rc.Name)
		}
	}
	for _, s := range cfg.Services {
		r.services[s.Name] = s.Alert
	}
	return r
}

// problems derives the problems of a snapshot, and the causes nothing is
// known of.
func (r routing) problems(snap health.Snapshot) (map[string]Problem, map[string]bool) {
	problems := map[string]Problem{}
	unknown := map[string]bool{}
	for _, s := range snap.Services {
		cause := "service/" + s.Name
		switch s.State {
		case health.Unknown:
			unknown[cause] = true
		case health.Down, health.Degraded:
			if s.Cause == health.CauseRelay {
				unknown[cause] = true // its own incident, if any, waits for the relay's end
				continue
			}
			title := fmt.Sprintf("%s is %s", s.Name, s.State)
			if s.Cause == health.CauseExposure {
				title = fmt.Sprintf("%s is unreachable from outside", s.Name)
			}
			problems[cause] = Problem{Cause: cause, Service: s.Name, State: s.State, Title: title, Detail: s.Reason,
				Services: []string{s.Name}, Receivers: r.services[s.Name]}
		}
	}
	if title, cutOff, ok := RelayBroken(snap); ok {
		detail := ""
		if snap.Relay != nil && snap.Relay.Last != nil {
			detail = snap.Relay.Last.Error
		}
		receivers := slices.Clone(r.notify)
		for _, name := range cutOff {
			receivers = append(receivers, r.services[name]...)
		}
		slices.Sort(receivers)
		problems[CauseRelay] = Problem{Cause: CauseRelay, State: health.Down, Title: title, Detail: detail,
			Services: cutOff, Receivers: slices.Compact(receivers)}
	} else if snap.Relay != nil && snap.Relay.State == health.Unknown {
		unknown[CauseRelay] = true
	}
	return problems, unknown
}
