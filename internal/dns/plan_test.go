package dns

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func a(name string, ips ...string) Record {
	return Record{Name: name, Type: "A", TTL: 300, Values: ips}
}
func cname(name, target string) Record {
	return Record{Name: name, Type: "CNAME", TTL: 300, Values: []string{target}}
}
func txt(name string, vals ...string) Record {
	return Record{Name: name, Type: "TXT", TTL: 300, Values: vals}
}

const mine = "heritage=external-dns,external-dns/owner=homelab"

func TestPlan(t *testing.T) {
	tests := []struct {
		name             string
		current, desired []Record
		want             Changeset
	}{
		{
			name:    "empty zone: create with ownership",
			desired: []Record{a("relay.example.org", "203.0.113.7")},
			want: Changeset{Changes: []Change{{Action: Create, Record: a("relay.example.org", "203.0.113.7"),
				Owner: txt("a-relay.example.org", mine)}}},
		},
		{
			name:    "in sync",
			current: []Record{a("relay.example.org", "203.0.113.7"), txt("a-relay.example.org", mine)},
			desired: []Record{a("relay.example.org", "203.0.113.7")},
			want:    Changeset{Unchanged: 1},
		},
		{
			name:    "values listed one by one, names with dots and capitals",
			current: []Record{a("Relay.Example.org.", "203.0.113.8"), a("relay.example.org", "203.0.113.7"), txt("a-relay.example.org", `"`+mine+`"`)},
			desired: []Record{a("relay.example.org", "203.0.113.7", "203.0.113.8")},
			want:    Changeset{Unchanged: 1},
		},
		{
			name:    "owned, different value: update",
			current: []Record{a("relay.example.org", "203.0.113.1"), txt("a-relay.example.org", mine)},
			desired: []Record{a("relay.example.org", "203.0.113.7")},
			want: Changeset{Changes: []Change{{Action: Update, Record: a("relay.example.org", "203.0.113.7"),
				Old: a("relay.example.org", "203.0.113.1"), Owner: txt("a-relay.example.org", mine)}}},
		},
		{
			name:    "owned, different TTL: update",
			current: []Record{{Name: "x.example.org", Type: "A", TTL: 60, Values: []string{"192.0.2.1"}}, txt("a-x.example.org", mine)},
			desired: []Record{a("x.example.org", "192.0.2.1")},
			want: Changeset{Changes: []Change{{Action: Update, Record: a("x.example.org", "192.0.2.1"),
				Old: Record{Name: "x.example.org", Type: "A", TTL: 60, Values: []string{"192.0.2.1"}}, Owner: txt("a-x.example.org", mine)}}},
		},
		{
			name:    "owned, no longer desired: delete with its ownership",
			current: []Record{cname("vault.example.org", "private-relay.example.org"), txt("cname-vault.example.org", mine)},
			want: Changeset{Changes: []Change{{Action: Delete, Record: cname("vault.example.org", "private-relay.example.org"),
				Owner: txt("cname-vault.example.org", mine)}}},
		},
		{
			name:    "leftover ownership record of ours: deleted",
			current: []Record{txt("cname-vault.example.org", mine)},
			want: Changeset{Changes: []Change{{Action: Delete, Record: Record{Name: "vault.example.org", Type: "CNAME"},
				Owner: txt("cname-vault.example.org", mine)}}},
		},
		{
			name:    "leftover ownership record of ours, record desired: recreated",
			current: []Record{txt("cname-vault.example.org", mine)},
			desired: []Record{cname("vault.example.org", "private-relay.example.org")},
			want: Changeset{Changes: []Change{{Action: Update, Record: cname("vault.example.org", "private-relay.example.org"),
				Old: Record{Name: "vault.example.org", Type: "CNAME"}, Owner: txt("cname-vault.example.org", mine)}}},
		},
		{
			name:    "not owned: conflict, never deleted",
			current: []Record{a("blog.example.org", "192.0.2.1"), a("other.example.org", "192.0.2.2")},
			desired: []Record{a("blog.example.org", "203.0.113.7")},
			want: Changeset{Conflicts: []Conflict{{a("blog.example.org", "203.0.113.7"),
				"already exists (192.0.2.1) without an ownership record: labgate does not change records it did not create"}}},
		},
		{
			name: "another owner's: conflict, never deleted",
			current: []Record{a("blog.example.org", "192.0.2.1"), txt("a-blog.example.org", "heritage=external-dns,external-dns/owner=k8s"),
				a("gone.example.org", "192.0.2.2"), txt("a-gone.example.org", "heritage=external-dns,external-dns/owner=k8s")},
			desired: []Record{a("blog.example.org", "203.0.113.7")},
			want: Changeset{Conflicts: []Conflict{{a("blog.example.org", "203.0.113.7"),
				`owned by "k8s", not by "homelab" (its ownership record a-blog.example.org says so)`}}},
		},
		{
			name:    "ownership record of another owner without its record: conflict",
			current: []Record{txt("a-blog.example.org", "heritage=external-dns,external-dns/owner=k8s")},
			desired: []Record{a("blog.example.org", "203.0.113.7")},
			want: Changeset{Conflicts: []Conflict{{a("blog.example.org", "203.0.113.7"),
				`claimed by owner "k8s" (ownership record a-blog.example.org)`}}},
		},
		{
			name:    "adopting ExternalDNS's records with extra labels",
			current: []Record{a("relay.example.org", "203.0.113.1"), txt("a-relay.example.org", mine+",external-dns/resource=service/default/relay")},
			desired: []Record{a("relay.example.org", "203.0.113.7")},
			want: Changeset{Changes: []Change{{Action: Update, Record: a("relay.example.org", "203.0.113.7"),
				Old: a("relay.example.org", "203.0.113.1"), Owner: txt("a-relay.example.org", mine+",external-dns/resource=service/default/relay")}}},
		},
		{
			name:    "a CNAME must be alone: foreign TXT at the name",
			current: []Record{txt("vault.example.org", "v=spf1 -all")},
			desired: []Record{cname("vault.example.org", "private-relay.example.org")},
			want: Changeset{Conflicts: []Conflict{{cname("vault.example.org", "private-relay.example.org"),
				"a CNAME must be alone at its name, and vault.example.org has TXT records not owned by labgate"}}},
		},
		{
			name:    "no A next to a foreign CNAME",
			current: []Record{cname("vault.example.org", "nas.example.org")},
			desired: []Record{a("vault.example.org", "100.101.102.103")},
			want: Changeset{Conflicts: []Conflict{{a("vault.example.org", "100.101.102.103"),
				"vault.example.org is a CNAME not owned by labgate, and a CNAME must be alone at its name"}}},
		},
		{
			name:    "flattening: our CNAME deleted first, then the A created",
			current: []Record{cname("vault.example.org", "private-relay.example.org"), txt("cname-vault.example.org", mine)},
			desired: []Record{a("vault.example.org", "100.101.102.103")},
			want: Changeset{Changes: []Change{
				{Action: Delete, Record: cname("vault.example.org", "private-relay.example.org"), Owner: txt("cname-vault.example.org", mine)},
				{Action: Create, Record: a("vault.example.org", "100.101.102.103"), Owner: txt("a-vault.example.org", mine)},
			}},
		},
		{
			name:    "un-flattening: our A deleted, the CNAME created next to our TXT-less name",
			current: []Record{a("vault.example.org", "100.101.102.103"), txt("a-vault.example.org", mine)},
			desired: []Record{cname("vault.example.org", "private-relay.example.org")},
			want: Changeset{Changes: []Change{
				{Action: Delete, Record: a("vault.example.org", "100.101.102.103"), Owner: txt("a-vault.example.org", mine)},
				{Action: Create, Record: cname("vault.example.org", "private-relay.example.org"), Owner: txt("cname-vault.example.org", mine)},
			}},
		},
		{
			name:    "wildcards are records like any other",
			desired: []Record{cname("*.apps.example.org", "relay.example.org")},
			want: Changeset{Changes: []Change{{Action: Create, Record: cname("*.apps.example.org", "relay.example.org"),
				Owner: txt("cname-*.apps.example.org", mine)}}},
		},
		{
			name:    "an ordinary TXT is not an ownership record",
			current: []Record{a("x.example.org", "192.0.2.1"), txt("a-x.example.org", mine, "something else")},
			desired: []Record{a("x.example.org", "192.0.2.9")},
			want: Changeset{Conflicts: []Conflict{{a("x.example.org", "192.0.2.9"),
				"already exists (192.0.2.1) without an ownership record: labgate does not change records it did not create"}}},
		},
		{
			name: "other record types at a name stay; an A beside them is fine",
			current: []Record{{Name: "mail.example.org", Type: "MX", TTL: 300, Values: []string{"10 mx.example.net."}},
				txt("mail.example.org", "v=spf1 -all")},
			desired: []Record{a("mail.example.org", "203.0.113.7")},
			want: Changeset{Changes: []Change{{Action: Create, Record: a("mail.example.org", "203.0.113.7"),
				Owner: txt("a-mail.example.org", mine)}}},
		},
		{
			// A zone signed by the server (BIND's inline signing) lists
			// RRSIG and NSEC records at every name; the server keeps them,
			// and a CNAME may replace the A records they sign.
			name: "DNSSEC records do not stand in a CNAME's way",
			current: []Record{a("vault.example.org", "192.0.2.1"), txt("a-vault.example.org", mine),
				{Name: "vault.example.org", Type: "RRSIG", TTL: 300, Values: []string{"A 13 3 300 20261231000000 20261101000000 12345 example.org. c2ln"}},
				{Name: "vault.example.org", Type: "NSEC", TTL: 300, Values: []string{"www.example.org. A RRSIG NSEC"}}},
			desired: []Record{cname("vault.example.org", "private-relay.example.org")},
			want: Changeset{Changes: []Change{
				{Action: Delete, Record: a("vault.example.org", "192.0.2.1"), Owner: txt("a-vault.example.org", mine)},
				{Action: Create, Record: cname("vault.example.org", "private-relay.example.org"), Owner: txt("cname-vault.example.org", mine)},
			}},
		},
		{
			// flatten turned off while a hand-made TXT stands at the name:
			// the CNAME cannot be written, and labgate's A record stays
			// rather than leave the name with nothing.
			name:    "a record a conflicting CNAME was to replace stays",
			current: []Record{a("vault.example.org", "192.0.2.1"), txt("a-vault.example.org", mine), txt("vault.example.org", "google-site-verification=x")},
			desired: []Record{cname("vault.example.org", "private-relay.example.org")},
			want: Changeset{Conflicts: []Conflict{{cname("vault.example.org", "private-relay.example.org"),
				"a CNAME must be alone at its name, and vault.example.org has TXT records not owned by labgate; labgate keeps its A record there meanwhile"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Plan(tt.current, tt.desired, "homelab")
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Plan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOwnerNames(t *testing.T) {
	for _, tt := range []struct{ name, typ, txt string }{
		{"relay.example.org", "A", "a-relay.example.org"},
		{"relay.example.org", "AAAA", "aaaa-relay.example.org"},
		{"*.apps.example.org", "CNAME", "cname-*.apps.example.org"},
	} {
		if got := OwnerName(tt.name, tt.typ); got != tt.txt {
			t.Errorf("OwnerName(%s, %s) = %s, want %s", tt.name, tt.typ, got, tt.txt)
		}
		if k, ok := ownedKey(tt.txt); !ok || k != (Key{tt.name, tt.typ}) {
			t.Errorf("ownedKey(%s) = %v, %v", tt.txt, k, ok)
		}
	}
	if _, ok := ownedKey("my-service.example.org"); ok {
		t.Error("ownedKey took my-service for an ownership name")
	}
}

func TestParseOwner(t *testing.T) {
	for _, tt := range []struct {
		value, owner string
		ok           bool
	}{
		{"heritage=external-dns,external-dns/owner=homelab", "homelab", true},
		{`"heritage=external-dns,external-dns/owner=homelab"`, "homelab", true},
		{"heritage=external-dns,external-dns/owner=default,external-dns/resource=ingress/ns/x", "default", true},
		{"heritage=external-dns", "", false},
		{"heritage=other,external-dns/owner=homelab", "", false},
		{"v=spf1 -all", "", false},
		{"heritage=external-dns,external-dns/owner=a,external-dns/owner=b", "", false},
	} {
		owner, ok := ParseOwner(tt.value)
		if owner != tt.owner || ok != tt.ok {
			t.Errorf("ParseOwner(%q) = %q, %v; want %q, %v", tt.value, owner, ok, tt.owner, tt.ok)
		}
	}
}

func FuzzParseOwner(f *testing.F) {
	f.Add("heritage=external-dns,external-dns/owner=homelab")
	f.Add(`"heritage=external-dns,external-dns/owner=x,external-dns/resource=a/b/c"`)
	f.Add("v=spf1 -all")
	f.Fuzz(func(t *testing.T, v string) {
		owner, ok := ParseOwner(v)
		if !ok {
			return
		}
		// What we read back must be what we would write for that owner,
		// give or take extra labels: OwnerValue(owner) parses to owner.
		if owner == "" {
			t.Fatalf("ParseOwner(%q) ok with an empty owner", v)
		}
		if got, ok := ParseOwner(OwnerValue(owner)); !ok || got != owner {
			t.Fatalf("ParseOwner(OwnerValue(%q)) = %q, %v", owner, got, ok)
		}
	})
}
