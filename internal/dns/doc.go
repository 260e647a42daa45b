// Package dns manages the lab's DNS records from the config and answers for
// them itself.
//
// The model follows ExternalDNS. Desired turns a *config.Config into the
// records the lab needs: relay.<domain> (A/AAAA to the relay's public IPs),
// <private name>.<domain> (A/AAAA to the gateway's private address), and one
// CNAME per service host to one of those two names (or, with dns.flatten,
// A/AAAA copies of their addresses). A record is an RRset: one name, one
// type, all its values.
//
// Plan(current, desired, owner) is pure: it compares what a provider listed
// with what is desired and returns creates, updates, deletes and conflicts.
// Ownership is recorded the way ExternalDNS records it, so a zone managed by
// ExternalDNS can be adopted with the same owner id: next to each owned RRset
// a TXT record at <type>-<name> (a-relay.example.org) holds
// "heritage=external-dns,external-dns/owner=<id>". Records without that TXT,
// or owned by another id, are never changed or deleted: when they stand where
// a desired record should be, the plan reports a conflict. For DNS servers
// that store no TXT records, FileOwnership keeps the same facts in a state
// file and Plan runs unchanged on records it synthesises.
//
// Providers (RFC2136 with TSIG, Cloudflare's v4 API) list a zone and apply one
// change at a time; each change is checked against what the plan saw (with
// RFC2136 prerequisites, atomically), so a record edited between plan and
// apply makes the change fail instead of being overwritten. Every provider
// also sets and deletes single TXT values, for ACME DNS-01 challenges.
//
// The Reconciler runs plan and apply at start, on every config change and
// periodically, and never deletes because a call failed: a failed listing
// means no plan at all. The Server answers DNS queries for the lab's names
// (split DNS for a tailnet or LAN) from the same desired records.
package dns
