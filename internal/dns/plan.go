package dns

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Action is what a Change does.
type Action string

const (
	Create Action = "create"
	Update Action = "update"
	Delete Action = "delete"
)

// Change is one RRset to create, update or delete, with its ownership record.
type Change struct {
	Action Action
	// Record is the RRset to write (create, update) or the one to remove
	// (delete, as listed). A delete without values removes only an ownership
	// record whose RRset is already gone.
	Record Record
	// Old is, for an update, the RRset as listed; without values when only
	// our ownership record was left (the RRset is then recreated).
	Old Record
	// Owner is the ownership TXT RRset: for a create the one to write, for an
	// update or a delete the one listed, which must still be there. Its Name
	// is empty when ownership is kept outside the zone (FileOwnership).
	Owner Record
}

func (c Change) String() string {
	switch {
	case c.Action == Update && len(c.Old.Values) == 0:
		return fmt.Sprintf("update %s (recreated: only its ownership record was left)", c.Record)
	case c.Action == Update:
		return fmt.Sprintf("update %s (was %s)", c.Record, strings.Join(c.Old.Values, ", "))
	case c.Action == Delete && len(c.Record.Values) == 0:
		return fmt.Sprintf("delete %s %s (a leftover ownership record)", c.Record.Name, c.Record.Type)
	}
	return fmt.Sprintf("%s %s", c.Action, c.Record)
}

// Conflict is a desired RRset that cannot be written without changing
// something labgate does not own.
type Conflict struct {
	Record Record // as desired
	Reason string
}

func (c Conflict) String() string { return fmt.Sprintf("%s: %s", c.Record, c.Reason) }

// Changeset is the result of Plan.
type Changeset struct {
	// Changes in the order they are applied: deletes (which may free a name
	// for a CNAME), updates, creates; by name and type within each.
	Changes   []Change
	Conflicts []Conflict
	// Unchanged counts the desired RRsets that are already right.
	Unchanged int
}

// Count returns how many changes have the action a.
func (cs Changeset) Count(a Action) int {
	n := 0
	for _, c := range cs.Changes {
		if c.Action == a {
			n++
		}
	}
	return n
}

// owned describes the ownership record of one RRset.
type owned struct {
	txt   Record // the TXT RRset at OwnerName
	owner string // "" when none; the owners joined by ", " when several claim it
}

// Plan compares the records listed in a zone with the desired ones and says
// what to change, as owner. It changes or deletes only RRsets whose ownership
// record names owner; a desired RRset standing where another one is (not
// owned, owned by someone else, or breaking the rule that a CNAME is alone at
// its name) is a conflict and left as it is. Plan is pure.
func Plan(current, desired []Record, owner string) Changeset {
	return PlanZone(current, desired, owner, "")
}

// PlanZone is Plan for the zone named zone, whose apex keeps its ownership
// records inside the zone (see ownerNameIn); "" plans as Plan, with
// ExternalDNS's names everywhere.
func PlanZone(current, desired []Record, owner, zone string) Changeset {
	zone = normName(zone)
	cur := map[Key]Record{}
	for _, r := range current {
		r = Normalize(r)
		if prev, ok := cur[r.Key()]; ok { // a provider listing values one by one
			r.Values = append(r.Values, prev.Values...)
			r.TTL = min(r.TTL, prev.TTL)
			r = Normalize(r)
		}
		cur[r.Key()] = r
	}
	// Split ownership records from the records they are about.
	owners := map[string]owned{} // by TXT name
	records := map[Key]Record{}
	types := map[string][]string{} // types present at each name (ownership records aside)
	for k, r := range cur {
		if k.Type == "TXT" {
			if ids, ok := ownerIDs(r); ok {
				owners[k.Name] = owned{txt: r, owner: strings.Join(ids, ", ")}
				continue
			}
		}
		records[k] = r
		if !serverKept(k.Type) {
			types[k.Name] = append(types[k.Name], k.Type)
		}
	}
	ownerOf := func(k Key) owned { return owners[ownerNameIn(zone, k.Name, k.Type)] }

	want := map[Key]Record{}
	for _, d := range desired {
		d = Normalize(d)
		want[d.Key()] = d
	}

	var cs Changeset
	deleting := map[Key]bool{}
	for k, r := range records {
		if _, ok := want[k]; !ok && ownerOf(k).owner == owner {
			cs.Changes = append(cs.Changes, Change{Action: Delete, Record: r, Owner: ownerOf(k).txt})
			deleting[k] = true
		}
	}
	for name, o := range owners {
		k, ok := ownedKeyIn(zone, name)
		if !ok || o.owner != owner {
			continue
		}
		if _, exists := records[k]; exists {
			continue
		}
		if _, ok := want[k]; !ok {
			cs.Changes = append(cs.Changes, Change{Action: Delete, Record: Record{Name: k.Name, Type: k.Type}, Owner: o.txt})
		}
	}

	for _, k := range sortedKeys(want) {
		d := want[k]
		o := ownerOf(k)
		if c, exists := records[k]; exists {
			switch {
			case o.owner == owner && sameData(c, d):
				cs.Unchanged++
			case o.owner == owner:
				cs.Changes = append(cs.Changes, Change{Action: Update, Record: d, Old: c, Owner: o.txt})
			case o.owner != "":
				cs.Conflicts = append(cs.Conflicts, Conflict{d, fmt.Sprintf("owned by %q, not by %q (its ownership record %s says so)", o.owner, owner, o.txt.Name)})
			default:
				cs.Conflicts = append(cs.Conflicts, Conflict{d, fmt.Sprintf("already exists (%s) without an ownership record: labgate does not change records it did not create", strings.Join(c.Values, ", "))})
			}
			continue
		}
		if o.owner != "" && o.owner != owner {
			cs.Conflicts = append(cs.Conflicts, Conflict{d, fmt.Sprintf("claimed by owner %q (ownership record %s)", o.owner, o.txt.Name)})
			continue
		}
		var others []string
		for _, t := range types[k.Name] {
			if t != k.Type && !deleting[Key{k.Name, t}] {
				others = append(others, t)
			}
		}
		slices.Sort(others)
		if k.Type == "CNAME" && len(others) > 0 {
			cs.Conflicts = append(cs.Conflicts, Conflict{d, fmt.Sprintf("a CNAME must be alone at its name, and %s has %s records not owned by labgate", k.Name, strings.Join(others, ", "))})
			continue
		}
		if k.Type != "CNAME" && slices.Contains(others, "CNAME") {
			cs.Conflicts = append(cs.Conflicts, Conflict{d, fmt.Sprintf("%s is a CNAME not owned by labgate, and a CNAME must be alone at its name", k.Name)})
			continue
		}
		if o.owner == owner {
			cs.Changes = append(cs.Changes, Change{Action: Update, Record: d, Old: Record{Name: k.Name, Type: k.Type}, Owner: o.txt})
			continue
		}
		txt := Record{Name: ownerNameIn(zone, k.Name, k.Type), Type: "TXT", TTL: d.TTL, Values: []string{OwnerValue(owner)}}
		cs.Changes = append(cs.Changes, Change{Action: Create, Record: d, Owner: txt})
	}
	// A record of labgate's that a conflicting one was to replace stays
	// (an A record when flatten is turned off and the CNAME cannot be
	// written): deleting it would leave the name with neither.
	held := map[string][]string{}
	for _, c := range cs.Conflicts {
		held[c.Record.Name] = nil
	}
	cs.Changes = slices.DeleteFunc(cs.Changes, func(c Change) bool {
		if _, ok := held[c.Record.Name]; ok && c.Action == Delete && len(c.Record.Values) > 0 {
			held[c.Record.Name] = append(held[c.Record.Name], c.Record.Type)
			return true
		}
		return false
	})
	if len(cs.Changes) == 0 {
		cs.Changes = nil
	}
	for i, c := range cs.Conflicts {
		if kept := held[c.Record.Name]; len(kept) > 0 {
			slices.Sort(kept)
			cs.Conflicts[i].Reason += fmt.Sprintf("; labgate keeps its %s record there meanwhile", strings.Join(kept, ", "))
		}
	}
	order := map[Action]int{Delete: 0, Update: 1, Create: 2}
	slices.SortFunc(cs.Changes, func(a, b Change) int {
		return cmp.Or(cmp.Compare(order[a.Action], order[b.Action]), cmp.Compare(a.Record.Name, b.Record.Name), cmp.Compare(a.Record.Type, b.Record.Type))
	})
	return cs
}

// serverKept reports whether typ is one a DNSSEC-signing server keeps at
// every name it signs: such records stand in no CNAME's way.
func serverKept(typ string) bool {
	return typ == "RRSIG" || typ == "NSEC" || typ == "NSEC3"
}

// ownerIDs returns the owners named by an ownership TXT RRset, or false when
// it is not one (any value that is not an ownership value makes it an
// ordinary TXT record).
func ownerIDs(r Record) ([]string, bool) {
	var ids []string
	for _, v := range r.Values {
		id, ok := ParseOwner(v)
		if !ok {
			return nil, false
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	return ids, len(ids) > 0
}

func sortedKeys[V any](m map[Key]V) []Key {
	keys := make([]Key, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b Key) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Type, b.Type)) })
	return keys
}
