package dns

import (
	"maps"
	"time"
)

// Status is what the reconciler knows of the zone's records now, for the
// status page. The zero Status manages nothing.
type Status struct {
	// Zone is the managed zone; "" when the config manages no records.
	Zone string `json:"zone,omitempty"`
	// Time is when the last reconciliation ended; zero before the first.
	Time time.Time `json:"time,omitzero"`
	// Err is why the last reconciliation failed; "" when it succeeded.
	Err string `json:"error,omitempty"`

	desired   map[string]bool   // names with desired records
	inPlace   map[string]bool   // names whose desired records were all found or written
	conflicts map[string]string // name -> why it is left as it is
}

// Host states, as Status.Host reports them.
const (
	HostOK       = "ok"       // every record of the host is in place
	HostPending  = "pending"  // not reconciled yet
	HostConflict = "conflict" // a record labgate does not own stands in the way
	HostFailing  = "failing"  // reconciling failed and the records are not known to be in place
)

// Host says whether name's records are in place: one of the Host states
// and a detail for people, or "" when labgate manages no record named name.
func (s Status) Host(name string) (state, detail string) {
	name = normName(name)
	switch {
	case s.Zone == "" || !s.desired[name]:
		return "", ""
	case s.conflicts[name] != "":
		return HostConflict, s.conflicts[name]
	case s.inPlace[name] && s.Err != "":
		return HostOK, "in place, but the last reconciliation failed: " + s.Err
	case s.inPlace[name]:
		return HostOK, ""
	case s.Err != "":
		return HostFailing, s.Err
	}
	return HostPending, ""
}

// newStatus is the status of a zone not reconciled yet.
func newStatus(z *Zone) Status {
	s := Status{Zone: z.Desired.Zone, desired: map[string]bool{}, inPlace: map[string]bool{}, conflicts: map[string]string{}}
	for _, r := range z.Desired.Records {
		s.desired[r.Name] = true
	}
	return s
}

// after returns the status after a reconciliation that planned cs (a
// failed listing plans nothing), made done, and ended with err.
func (s Status) after(cs Changeset, planned bool, done []Change, err error, now time.Time) Status {
	next := s
	next.Time, next.Err = now, ""
	if err != nil {
		next.Err = err.Error()
	}
	if !planned {
		return next // nothing new is known of the records
	}
	next.inPlace, next.conflicts = map[string]bool{}, map[string]string{}
	made := map[Key]bool{}
	for _, c := range done {
		made[c.Record.Key()] = true
	}
	notYet := map[string]bool{}
	for _, c := range cs.Changes {
		if c.Action != Delete && !made[c.Record.Key()] {
			notYet[c.Record.Name] = true
		}
	}
	for _, c := range cs.Conflicts {
		next.conflicts[c.Record.Name] = c.Reason
		notYet[c.Record.Name] = true
	}
	for n := range maps.Keys(s.desired) {
		if !notYet[n] {
			next.inPlace[n] = true
		}
	}
	return next
}
