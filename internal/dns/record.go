package dns

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Record is one RRset: every value of one type at one name.
type Record struct {
	Name string // fully qualified, lower case, no trailing dot; "*.apps.example.org" for a wildcard
	Type string // "A", "AAAA", "CNAME", "TXT", … (upper case)
	TTL  uint32 // seconds
	// Values in presentation form, sorted: addresses as netip prints them,
	// names lower case without the trailing dot, TXT as the text itself
	// (several character-strings joined, without quotes).
	Values []string
	// Proxied is Cloudflare's proxy flag (the orange cloud); false elsewhere.
	Proxied bool
}

// Key names an RRset.
type Key struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// Key returns the RRset's name and type.
func (r Record) Key() Key { return Key{r.Name, r.Type} }

func (r Record) String() string {
	s := fmt.Sprintf("%s %s", r.Name, r.Type)
	if len(r.Values) > 0 {
		s += " " + strings.Join(r.Values, ", ")
	}
	if r.Proxied {
		s += " (proxied)"
	}
	return s
}

// Normalize returns r in the canonical form Plan compares: lower-case names
// without trailing dots, upper-case type, canonical addresses, sorted and
// de-duplicated values.
func Normalize(r Record) Record {
	r.Name = normName(r.Name)
	r.Type = strings.ToUpper(r.Type)
	vals := make([]string, 0, len(r.Values))
	for _, v := range r.Values {
		switch r.Type {
		case "A", "AAAA":
			if a, err := netip.ParseAddr(v); err == nil {
				v = a.Unmap().String()
			}
		case "CNAME", "NS", "PTR":
			v = normName(v)
		}
		vals = append(vals, v)
	}
	slices.Sort(vals)
	r.Values = slices.Compact(vals)
	return r
}

func normName(s string) string { return strings.TrimSuffix(strings.ToLower(s), ".") }

// sameData reports whether two normalized RRsets need no update from one to
// the other. A proxied record's TTL is Cloudflare's to choose.
func sameData(a, b Record) bool {
	return slices.Equal(a.Values, b.Values) && a.Proxied == b.Proxied && (a.Proxied || a.TTL == b.TTL)
}

// InZone reports whether name is zone or below it (a wildcard counts as its
// parent); names are compared as config writes them: lower case, no trailing dot.
func InZone(name, zone string) bool {
	name = strings.TrimPrefix(name, "*.")
	return zone != "" && (name == zone || strings.HasSuffix(name, "."+zone))
}

// Ownership records, compatible with ExternalDNS's TXT registry (new format,
// no prefix or suffix): the TXT for the A record of relay.example.org is at
// a-relay.example.org and holds "heritage=external-dns,external-dns/owner=ID".

const heritage = "external-dns"

// OwnerName is the name of the ownership TXT of the RRset (name, typ).
func OwnerName(name, typ string) string {
	first, rest, ok := strings.Cut(name, ".")
	out := strings.ToLower(typ) + "-" + first
	if ok {
		out += "." + rest
	}
	return out
}

// ownerNameIn is OwnerName for an RRset of zone. At the apex, ExternalDNS's
// name (a-example.org for example.org) lies outside the zone, where no
// provider of the zone can write it; the apex's ownership record is
// _a-apex.example.org instead (no other ownership name starts with "_").
func ownerNameIn(zone, name, typ string) string {
	if zone != "" && name == zone {
		return "_" + strings.ToLower(typ) + "-apex." + zone
	}
	return OwnerName(name, typ)
}

// ownedKeyIn is the inverse of ownerNameIn.
func ownedKeyIn(zone, txtName string) (Key, bool) {
	if first, rest, _ := strings.Cut(txtName, "."); zone != "" && rest == zone {
		if typ, ok := strings.CutSuffix(strings.TrimPrefix(first, "_"), "-apex"); ok && strings.HasPrefix(first, "_") && ownedTypes[typ] {
			return Key{zone, strings.ToUpper(typ)}, true
		}
	}
	return ownedKey(txtName)
}

// ownedKey is the inverse of OwnerName: the RRset an ownership TXT at txtName
// is about. Only the types ExternalDNS writes are recognised.
func ownedKey(txtName string) (Key, bool) {
	first, rest, _ := strings.Cut(txtName, ".")
	typ, label, ok := strings.Cut(first, "-")
	if !ok || label == "" || !ownedTypes[typ] {
		return Key{}, false
	}
	name := label
	if rest != "" {
		name += "." + rest
	}
	return Key{name, strings.ToUpper(typ)}, true
}

var ownedTypes = map[string]bool{"a": true, "aaaa": true, "cname": true, "txt": true, "mx": true, "srv": true, "ns": true, "ptr": true, "naptr": true, "caa": true}

// OwnerValue is the text of the ownership TXT for owner.
func OwnerValue(owner string) string {
	return "heritage=" + heritage + ",external-dns/owner=" + owner
}

// ParseOwner reads an ownership TXT value (with or without the quotes of its
// presentation form) and returns the owner id. Other labels ExternalDNS
// writes (external-dns/resource=…) are allowed and ignored.
func ParseOwner(value string) (owner string, ok bool) {
	v := strings.TrimSpace(value)
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	isHeritage := false
	for _, kv := range strings.Split(v, ",") {
		k, val, found := strings.Cut(kv, "=")
		if !found {
			return "", false
		}
		switch k {
		case "heritage":
			if val != heritage {
				return "", false
			}
			isHeritage = true
		case "external-dns/owner":
			if owner != "" {
				return "", false
			}
			owner = val
		}
	}
	// An owner id with surrounding spaces is none labgate (or ExternalDNS)
	// would write: the value's own trimming would not give it back.
	if !isHeritage || owner == "" || owner != strings.TrimSpace(owner) {
		return "", false
	}
	return owner, true
}
