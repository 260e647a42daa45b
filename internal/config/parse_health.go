package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Check is one check of a service (health.checks).
type Check struct {
	Name string // unique within the service: the type, "-2" etc. when it repeats
	Type string // "http", "tcp", "tls", "dns"
	// http
	Path       string
	Status     int // 0: any 2xx or 3xx
	Body       string
	JSONField  string // dotted path; "" checks no field
	JSONEquals string
	// all types
	MaxLatency time.Duration // 0: no latency bound
	// tcp, tls: host:port; "" derives it from the service (see CheckAddress)
	Address     string
	MinDaysLeft int // tls, and http checks of https backends
	// dns
	Host   string
	Expect []netip.Addr
}

// Alerting says when alerts are sent.
type Alerting struct {
	Reminder    time.Duration // 0: no reminders
	Notify      []string      // receivers of alerts that are no one service's; empty: all
	Maintenance []Maintenance
}

// Maintenance is a window during which the alerts of Services (all when
// empty) are held back.
type Maintenance struct {
	Services []string
	// A one-off window, [Start, End); zero when Weekly is set.
	Start, End time.Time
	Weekly     *Weekly
}

// Weekly is a window repeating every week.
type Weekly struct {
	Days     [7]bool       // by time.Weekday: the days the window starts on
	From, To time.Duration // since midnight; To <= From ends the next day
	Timezone string        // IANA name; "" is the machine's
}

// Covers reports whether the window concerns service ("" is an alert that
// is no one service's).
func (m Maintenance) Covers(service string) bool {
	return len(m.Services) == 0 || slices.Contains(m.Services, service)
}

// Active reports whether the window is on at t.
func (m Maintenance) Active(t time.Time) bool {
	w := m.Weekly
	if w == nil {
		return !t.Before(m.Start) && t.Before(m.End)
	}
	loc := time.Local
	if w.Timezone != "" {
		if l, err := time.LoadLocation(w.Timezone); err == nil {
			loc = l
		}
	}
	t = t.In(loc)
	// The window that started today, or the one that started yesterday and
	// runs past midnight.
	for back := range 2 {
		day := t.AddDate(0, 0, -back)
		if !w.Days[day.Weekday()] {
			continue
		}
		// Wall-clock times of that day: on a day that changes to or from
		// daylight saving time, 04:00 is not midnight plus four hours.
		y, mo, d := day.Date()
		start := time.Date(y, mo, d, 0, 0, 0, int(w.From), loc)
		end := time.Date(y, mo, d, 0, 0, 0, int(w.To), loc)
		if w.To <= w.From {
			end = time.Date(y, mo, d+1, 0, 0, 0, int(w.To), loc)
		}
		if !t.Before(start) && t.Before(end) {
			return true
		}
	}
	return false
}

// health builds a service's health section; c has its relay and receivers.
func (b *builder) health(path string, h *fileHealth, s *Service, c *Config) *Health {
	if h == nil {
		return nil
	}
	out := &Health{Path: h.Path, Interval: time.Duration(h.Interval), Timeout: time.Duration(h.Timeout), Status: h.Status,
		Failures: h.Failures, Successes: h.Successes}
	if !strings.HasPrefix(h.Path, "/") {
		b.fail(path+".path", "%q must start with /", h.Path)
	}
	if out.Interval < time.Second {
		b.fail(path+".interval", "at least 1s")
	}
	if out.Timeout <= 0 || out.Timeout > out.Interval {
		b.fail(path+".timeout", "must be more than 0 and at most the interval")
	}
	if h.Status != 0 && (h.Status < 100 || h.Status > 599) {
		b.fail(path+".status", "%d is not an HTTP status", h.Status)
	}
	if h.Failures < 1 {
		b.fail(path+".failures", "at least 1")
	}
	if h.Successes < 1 {
		b.fail(path+".successes", "at least 1")
	}
	switch h.Outside {
	case "on":
		out.Outside = true
		if s.Expose != Public {
			b.fail(path+".outside", "outside checks go through the relay: only for a service with expose: public")
		}
	case "auto":
		out.Outside = s.Expose == Public && c.Relay != nil
	}
	names := map[string]bool{}
	seen := map[string]int{}
	for i, f := range h.Checks {
		p := fmt.Sprintf("%s.checks[%d]", path, i)
		if f == nil {
			b.fail(p, "empty check (set type: http, tcp, tls or dns)")
			continue
		}
		ch := b.check(p, f, h, s)
		if ch.Name == "" {
			seen[ch.Type]++
			ch.Name = ch.Type
			if n := seen[ch.Type]; n > 1 {
				ch.Name += "-" + strconv.Itoa(n)
			}
		} else if !validName(ch.Name) {
			b.fail(p+".name", "%q is not a valid name (lower case letters, digits and dashes, starting with a letter)", ch.Name)
		}
		if names[ch.Name] {
			b.fail(p+".name", "%q is already the name of another check of this service (set name)", ch.Name)
		}
		names[ch.Name] = true
		out.Checks = append(out.Checks, ch)
	}
	if len(h.Checks) == 0 {
		out.Checks = defaultChecks(out, s)
	}
	return out
}

// defaultChecks are the checks of a health section without checks: http of
// health.path for a service with hosts, else a tcp check per tcp port.
func defaultChecks(h *Health, s *Service) []Check {
	if len(s.Hosts) > 0 {
		return []Check{{Name: "http", Type: "http", Path: h.Path, Status: h.Status, MinDaysLeft: 14}}
	}
	var out []Check
	for _, r := range s.TCP {
		out = append(out, Check{Name: "tcp-" + strconv.Itoa(r.Port), Type: "tcp", Address: r.Backend})
	}
	return out
}

func (b *builder) check(p string, f *fileCheck, h *fileHealth, s *Service) Check {
	ch := Check{Name: f.Name, Type: f.Type, Path: f.Path, Status: f.Status, Body: f.Body, MaxLatency: time.Duration(f.MaxLatency),
		MinDaysLeft: f.MinDaysLeft, Host: f.Host}
	only := func(key string, set bool, types ...string) {
		if set && !slices.Contains(types, f.Type) {
			b.fail(p+"."+key, "only for %s checks, not %s", strings.Join(types, " and "), f.Type)
		}
	}
	only("path", f.Path != "", "http")
	only("status", f.Status != 0, "http")
	only("body", f.Body != "", "http")
	only("json", f.JSON != nil, "http")
	only("address", f.Address != "", "tcp", "tls")
	only("host", f.Host != "", "dns")
	only("expect", len(f.Expect) > 0, "dns")
	if f.MinDaysLeft < 0 {
		b.fail(p+".min_days_left", "must not be negative")
	}
	switch f.Type {
	case "http":
		if ch.Path == "" {
			ch.Path = h.Path
		}
		if !strings.HasPrefix(ch.Path, "/") {
			b.fail(p+".path", "%q must start with /", ch.Path)
		}
		if ch.Status == 0 {
			ch.Status = h.Status
		}
		if ch.Status != 0 && (ch.Status < 100 || ch.Status > 599) {
			b.fail(p+".status", "%d is not an HTTP status", ch.Status)
		}
		if j := f.JSON; j != nil {
			ch.JSONField, ch.JSONEquals = j.Field, j.Equals
			if j.Field == "" || strings.Contains(j.Field, "..") || strings.HasPrefix(j.Field, ".") || strings.HasSuffix(j.Field, ".") {
				b.fail(p+".json.field", "%q is not a dotted field path such as status or db.ok", j.Field)
			}
		}
		if len(s.Hosts) == 0 {
			b.fail(p+".type", "an http check needs a service with host (or hosts)")
		}
	case "tcp", "tls":
		if f.Address != "" {
			ch.Address = b.hostPort(p+".address", f.Address)
		} else if f.Type == "tcp" && CheckAddress(ch, s) == "" {
			b.fail(p+".address", "set address (host:port): the service has no tcp port or backend to check")
		} else if f.Type == "tls" && CheckAddress(ch, s) == "" && len(s.Hosts) == 0 {
			b.fail(p+".address", "set address (host:port): the service has no host or https backend to check")
		}
	case "dns":
		if ch.Host != "" {
			if h, ok := hostname(ch.Host); ok && !strings.HasPrefix(h, "*") {
				ch.Host = h
			} else {
				b.fail(p+".host", "%q is not a DNS name", f.Host)
			}
		} else if len(s.Hosts) == 0 || strings.HasPrefix(s.Hosts[0], "*") {
			b.fail(p+".host", "set host: the service has no host name to resolve")
		} else {
			ch.Host = s.Hosts[0]
		}
		for i, e := range f.Expect {
			a, err := netip.ParseAddr(e)
			if err != nil {
				b.fail(fmt.Sprintf("%s.expect[%d]", p, i), "%q is not an IP address", e)
				continue
			}
			ch.Expect = append(ch.Expect, a)
		}
	}
	if ch.MaxLatency < 0 {
		b.fail(p+".max_latency", "must not be negative")
	}
	return ch
}

// CheckAddress is the host:port a tcp or tls check connects to from inside:
// its address, else the first tcp port's backend (tcp) or the first
// https backend (tls). "" when there is none: a tls check then connects to
// the gateway's own HTTPS listener with the service's host as server name.
func CheckAddress(ch Check, s *Service) string {
	if ch.Address != "" {
		return ch.Address
	}
	switch ch.Type {
	case "tcp":
		if len(s.TCP) > 0 {
			return s.TCP[0].Backend
		}
		if len(s.Backends) > 0 {
			return backendHostPort(s)
		}
	case "tls":
		if len(s.Backends) > 0 && s.Backends[0].Scheme == "https" {
			return backendHostPort(s)
		}
	}
	return ""
}

func backendHostPort(s *Service) string {
	u := s.Backends[0]
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return u.Host + ":443"
	}
	return u.Host + ":80"
}

func (b *builder) alerting(f fileAlerting, c *Config) Alerting {
	a := Alerting{Reminder: time.Duration(f.Reminder)}
	receivers := map[string]bool{}
	for _, r := range c.Alerts {
		receivers[r.Name] = true
	}
	for i, n := range f.Notify {
		if !receivers[n] {
			b.fail(fmt.Sprintf("alerting.notify[%d]", i), "no receiver %q under alerts%s", n, suggest(n, keysOf(receivers)))
		}
		a.Notify = append(a.Notify, n)
	}
	services := map[string]bool{}
	for _, s := range c.Services {
		services[s.Name] = true
	}
	for i, m := range f.Maintenance {
		p := fmt.Sprintf("alerting.maintenance[%d]", i)
		if m == nil {
			b.fail(p, "empty window (set start and end, or weekly)")
			continue
		}
		w := Maintenance{}
		for j, s := range m.Services {
			if !services[s] {
				b.fail(fmt.Sprintf("%s.services[%d]", p, j), "no service %q%s", s, suggest(s, keysOf(services)))
			}
			w.Services = append(w.Services, s)
		}
		switch {
		case m.Weekly != "" && (m.Start != "" || m.End != ""):
			b.fail(p, "set start and end, or weekly, not both")
		case m.Weekly != "":
			wk, err := parseWeekly(m.Weekly)
			if err != nil {
				b.fail(p+".weekly", "%q: %v (write it like sun 03:00-04:30 or mon-fri 22:00-02:00)", m.Weekly, err)
				break
			}
			if m.Timezone != "" {
				if _, err := time.LoadLocation(m.Timezone); err != nil {
					b.fail(p+".timezone", "%q is not a known time zone (an IANA name such as Europe/Berlin)", m.Timezone)
				}
			}
			wk.Timezone = m.Timezone
			w.Weekly = wk
		case m.Start == "" || m.End == "":
			b.fail(p, "set start and end (RFC 3339, 2026-12-01T02:00:00Z), or weekly")
		default:
			if m.Timezone != "" {
				b.fail(p+".timezone", "only for a weekly window: start and end carry their own offset")
			}
			var err error
			if w.Start, err = time.Parse(time.RFC3339, m.Start); err != nil {
				b.fail(p+".start", "%q is not an RFC 3339 time like 2026-12-01T02:00:00Z", m.Start)
			}
			if w.End, err = time.Parse(time.RFC3339, m.End); err != nil {
				b.fail(p+".end", "%q is not an RFC 3339 time like 2026-12-01T04:00:00Z", m.End)
			} else if !w.End.After(w.Start) {
				b.fail(p+".end", "must be after start")
			}
		}
		a.Maintenance = append(a.Maintenance, w)
	}
	return a
}

var weekdays = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday,
	"wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// parseWeekly reads "sun 03:00-04:30", "mon,thu 22:00-02:00", "mon-fri 01:00-02:00".
func parseWeekly(s string) (*Weekly, error) {
	days, span, ok := strings.Cut(strings.TrimSpace(strings.ToLower(s)), " ")
	if !ok {
		return nil, fmt.Errorf("want days and a time range")
	}
	w := &Weekly{}
	for part := range strings.SplitSeq(days, ",") {
		from, to, isRange := strings.Cut(part, "-")
		a, ok1 := weekdays[from]
		z, ok2 := weekdays[to]
		if !isRange {
			z, ok2 = a, ok1
		}
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%q is not a day (sun, mon, tue, wed, thu, fri, sat)", part)
		}
		for d := a; ; d = (d + 1) % 7 {
			w.Days[d] = true
			if d == z {
				break
			}
		}
	}
	from, to, ok := strings.Cut(strings.TrimSpace(span), "-")
	if !ok {
		return nil, fmt.Errorf("want a time range such as 03:00-04:30")
	}
	var err error
	if w.From, err = clock(from); err != nil {
		return nil, err
	}
	if w.To, err = clock(to); err != nil {
		return nil, err
	}
	if w.From == w.To {
		return nil, fmt.Errorf("the range is empty")
	}
	return w, nil
}

func clock(s string) (time.Duration, error) {
	t, err := time.Parse("15:04", strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a time of day such as 03:00", s)
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}
