// Package status serves labgate's status UI, its JSON API, SVG badges and
// charts for READMEs, and a cache of images (Grafana panels) the file names.
//
// Pages are rendered on the server with html/template and embedded CSS:
// no JavaScript, no external request, usable on a phone. What the page
// shows comes from two inputs defined here: a Source, which says what is
// true now (every service's state, certificates, DNS, the relay path, the
// config revision), and a History, which says what was true before (daily
// and five-minute buckets; *history.Store is one).
package status

import (
	"time"

	"github.com/labgate/labgate/internal/history"
)

// Source says what is true now. Snapshot is called on every request: it
// must be cheap and safe for concurrent use.
type Source interface {
	Snapshot() Snapshot
}

// SourceFunc adapts a function to Source.
type SourceFunc func() Snapshot

// Snapshot calls f.
func (f SourceFunc) Snapshot() Snapshot { return f() }

// History is what the pages read of the past. *history.Store implements it.
type History interface {
	// Days returns n daily buckets, oldest first, the last being end's day.
	Days(service, check string, end time.Time, n int) ([]history.Bucket, error)
	// Fine returns the five-minute buckets from from to to, oldest first.
	Fine(service, check string, from, to time.Time) ([]history.Bucket, error)
}

// Snapshot is the state of the lab at one moment.
type Snapshot struct {
	// Revision of the config that serves (a git commit, or a hash of the file).
	Revision string `json:"revision"`
	// Generation counts the configs applied since labgate started.
	Generation int `json:"generation"`
	// Services in file order.
	Services []Service `json:"services"`
	// Relay is the relay path; nil when it is not measured.
	Relay *Relay `json:"relay,omitempty"`
	// Problems are the open problems that are no one service's (a
	// certificate not obtained, DNS records not reconciled, a damaged file
	// of state_dir), oldest first. Only the admin page shows them.
	Problems []Problem `json:"problems,omitempty"`
}

// Problem is something wrong that is no one service's, as the alert that
// says it: Cause names it ("cert/vault.example.org", "dns",
// "state/history.db.damaged-…"), Detail says what is wrong and what to do.
type Problem struct {
	Cause  string `json:"cause"`
	Title  string `json:"title"`
	Detail string `json:"detail,omitempty"`
	// Since is when it was raised; Changed when its title or detail last
	// changed (Since when they never did).
	Since   time.Time `json:"since"`
	Changed time.Time `json:"changed"`
}

// Service is what is known of one service now.
type Service struct {
	Name  string   `json:"name"`
	Class string   `json:"class"` // public or private
	Hosts []string `json:"hosts,omitempty"`
	Ports []string `json:"ports,omitempty"` // layer-4 ports, as "tcp/25"
	State string   `json:"state"`           // up, degraded, down or unknown
	Cause string   `json:"cause,omitempty"` // why it is not up, for people
	// LastCheck is when the state was last established; zero: never.
	LastCheck time.Time `json:"last_check,omitzero"`
	// Latency of the last check; 0: none.
	Latency time.Duration `json:"-"`
	// Backends and whether each takes requests.
	Backends []Backend `json:"backends,omitempty"`
	// CertExpiry is when the certificate for the service's hosts expires;
	// zero: no certificate (or not known).
	CertExpiry time.Time `json:"cert_expiry,omitzero"`
	// DNS is the state of the service's records on the DNS provider:
	// "ok", "pending" (not reconciled yet), "conflict" (a record labgate
	// does not own is in the way), "failing", or "" when labgate manages none.
	DNS       string `json:"dns,omitempty"`
	DNSDetail string `json:"dns_detail,omitempty"`
}

// Backend is one backend of a service.
type Backend struct {
	URL string `json:"url"`
	Up  bool   `json:"up"`
}

// Relay is the state of the relay path (gateway to relay over the VPN).
type Relay struct {
	Address string `json:"address"`         // the relay's measurement endpoint
	State   string `json:"state"`           // up, degraded, down or unknown
	Cause   string `json:"cause,omitempty"` // why it is not up, for people
	// Samples are the recent measurements, oldest first.
	Samples []RelaySample `json:"samples"`
}

// RelaySample is one measurement of the relay path.
type RelaySample struct {
	Time time.Time `json:"time"`
	RTT  float64   `json:"rtt_seconds,omitempty"`
	Down float64   `json:"down_bytes_per_second,omitempty"`
	Up   float64   `json:"up_bytes_per_second,omitempty"`
	Err  string    `json:"error,omitempty"`
}

// Last returns the newest measurement that succeeded, if any.
func (r *Relay) Last() (RelaySample, bool) {
	for i := len(r.Samples) - 1; i >= 0; i-- {
		if r.Samples[i].Err == "" {
			return r.Samples[i], true
		}
	}
	return RelaySample{}, false
}
