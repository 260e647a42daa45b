package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const healthLab = `version: 1
domain: lab.test
relay: { public_ips: [203.0.113.7], gateway: 100.64.0.1 }
gateway:
  public: { https: "100.64.0.1:10443", trusted_relays: [100.90.0.1] }
alerts:
  ops: { webhook: { url: "https://hooks.lab.test/x" } }
alerting:
  reminder: 1h
  notify: [ops]
  maintenance:
    - { services: [cloud], weekly: "sun 03:00-04:30", timezone: Europe/Berlin }
    - { start: "2026-12-01T02:00:00Z", end: "2026-12-01T04:00:00Z" }
services:
  - name: cloud
    host: cloud
    expose: public
    backends: ["https://10.0.0.5", "http://10.0.0.6:8080"]
    health:
      path: /status.php
      failures: 2
      checks:
        - { type: http, json: { field: installed, equals: "true" }, max_latency: 2s }
        - { type: http, path: /login, status: 200, body: Nextcloud }
        - { type: tls, min_days_left: 20 }
        - { type: dns }
  - name: mail
    expose: public
    tcp: [{ port: 25, backend: "10.0.0.7:25" }, { port: 993, backend: "10.0.0.7:993" }]
    health: { outside: off }
  - name: vault
    host: vault
    backend: http://10.0.0.8
    health: {}
`

func TestParseHealth(t *testing.T) {
	cfg, err := Parse("lab.yaml", []byte(healthLab), Options{Getenv: env()})
	if err != nil {
		t.Fatal(err)
	}
	want := []*Health{
		{Path: "/status.php", Interval: 30 * time.Second, Timeout: 5 * time.Second, Failures: 2, Successes: 2, Outside: true,
			Checks: []Check{
				{Name: "http", Type: "http", Path: "/status.php", JSONField: "installed", JSONEquals: "true", MaxLatency: 2 * time.Second, MinDaysLeft: 14},
				{Name: "http-2", Type: "http", Path: "/login", Status: 200, Body: "Nextcloud", MinDaysLeft: 14},
				{Name: "tls", Type: "tls", MinDaysLeft: 20},
				{Name: "dns", Type: "dns", Host: "cloud.lab.test", MinDaysLeft: 14},
			}},
		{Path: "/", Interval: 30 * time.Second, Timeout: 5 * time.Second, Failures: 3, Successes: 2,
			Checks: []Check{{Name: "tcp-25", Type: "tcp", Address: "10.0.0.7:25"}, {Name: "tcp-993", Type: "tcp", Address: "10.0.0.7:993"}}},
		{Path: "/", Interval: 30 * time.Second, Timeout: 5 * time.Second, Failures: 3, Successes: 2,
			Checks: []Check{{Name: "http", Type: "http", Path: "/", MinDaysLeft: 14}}},
	}
	for i, s := range cfg.Services {
		if diff := cmp.Diff(want[i], s.Health, cmpOpts); diff != "" {
			t.Errorf("%s health (-want +got):\n%s", s.Name, diff)
		}
	}
	if got := CheckAddress(cfg.Services[0].Health.Checks[2], cfg.Services[0]); got != "10.0.0.5:443" {
		t.Errorf("tls check address %q", got)
	}
	wantAlerting := Alerting{Reminder: time.Hour, Notify: []string{"ops"}, Maintenance: []Maintenance{
		{Services: []string{"cloud"}, Weekly: &Weekly{Days: [7]bool{time.Sunday: true}, From: 3 * time.Hour, To: 4*time.Hour + 30*time.Minute, Timezone: "Europe/Berlin"}},
		{Start: time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC), End: time.Date(2026, 12, 1, 4, 0, 0, 0, time.UTC)},
	}}
	if diff := cmp.Diff(wantAlerting, cfg.Alerting, cmpOpts); diff != "" {
		t.Errorf("alerting (-want +got):\n%s", diff)
	}
}

func TestParseHealthErrors(t *testing.T) {
	head := "version: 1\ndomain: lab.test\nalerts: { ops: { webhook: { url: \"https://h.lab.test\" } } }\n"
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"checks", head + `services:
- name: a
  host: a
  backend: http://10.0.0.1
  health:
    failures: 0
    outside: on
    checks:
      - { type: ping }
      - { type: tcp, path: /x }
      - { type: http, json: { field: ".a", equals: x }, expect: [1.2.3.4] }
      - { type: http, name: http }
      - { type: dns, expect: [nope] }
`, []string{
			`lab.yaml:9:15: services[0].health.failures: at least 1`,
			`lab.yaml:10:14: services[0].health.outside: outside checks go through the relay: only for a service with expose: public`,
			`lab.yaml:12:17: services[0].health.checks[0].type: "ping" is not one of http, tcp, tls, dns`,
			`lab.yaml:13:28: services[0].health.checks[1].path: only for http checks, not tcp`,
			`lab.yaml:14:38: services[0].health.checks[2].json.field: ".a" is not a dotted field path such as status or db.ok`,
			`lab.yaml:14:65: services[0].health.checks[2].expect: only for dns checks, not http`,
			`lab.yaml:15:29: services[0].health.checks[3].name: "http" is already the name of another check of this service (set name)`,
			`lab.yaml:16:31: services[0].health.checks[4].expect[0]: "nope" is not an IP address`,
		}},
		{"tcp check of a service without ports", head + "services:\n- { name: a, host: a, echo: true, health: { checks: [{ type: tcp }] } }\n", []string{
			`lab.yaml:5:54: services[0].health.checks[0].address: set address (host:port): the service has no tcp port or backend to check`,
		}},
		{"alerting", head + `services:
- { name: a, host: a, echo: true }
alerting:
  notify: [opz]
  maintenance:
    - { services: [b], weekly: "funday 03:00-04:00" }
    - { weekly: "sun 03:00-03:00", timezone: Mars/Olympus }
    - { start: "2026-12-01T04:00:00Z", end: "2026-12-01T02:00:00Z" }
    - { start: "tomorrow" }
    - { weekly: "sun 03:00-04:00", start: "2026-12-01T04:00:00Z" }
`, []string{
			`lab.yaml:7:12: alerting.notify[0]: no receiver "opz" under alerts (did you mean "ops"?)`,
			`lab.yaml:9:20: alerting.maintenance[0].services[0]: no service "b" (did you mean "a"?)`,
			`lab.yaml:9:32: alerting.maintenance[0].weekly: "funday 03:00-04:00": "funday" is not a day (sun, mon, tue, wed, thu, fri, sat) (write it like sun 03:00-04:30 or mon-fri 22:00-02:00)`,
			`lab.yaml:10:17: alerting.maintenance[1].weekly: "sun 03:00-03:00": the range is empty (write it like sun 03:00-04:30 or mon-fri 22:00-02:00)`,
			`lab.yaml:11:45: alerting.maintenance[2].end: must be after start`,
			`lab.yaml:12:7: alerting.maintenance[3]: set start and end (RFC 3339, 2026-12-01T02:00:00Z), or weekly`,
			`lab.yaml:13:7: alerting.maintenance[4]: set start and end, or weekly, not both`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("lab.yaml", []byte(tt.yaml), Options{Getenv: env()})
			if err == nil {
				t.Fatal("no error")
			}
			if diff := cmp.Diff(tt.want, strings.Split(err.Error(), "\n")); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMaintenanceActive(t *testing.T) {
	w, err := parseWeekly("fri-sat 22:00-02:00")
	if err != nil {
		t.Fatal(err)
	}
	w.Timezone = "UTC"
	m := Maintenance{Weekly: w}
	tests := []struct {
		at   string
		want bool
	}{
		{"2026-11-27T21:59:00Z", false}, // Friday
		{"2026-11-27T22:00:00Z", true},
		{"2026-11-28T01:59:00Z", true}, // Saturday, the night from Friday
		{"2026-11-28T02:00:00Z", false},
		{"2026-11-28T23:00:00Z", true},  // Saturday night
		{"2026-11-29T01:00:00Z", true},  // Sunday, from Saturday
		{"2026-11-29T23:00:00Z", false}, // Sunday night: no window
		{"2026-11-26T23:00:00Z", false}, // Thursday
	}
	for _, tt := range tests {
		at, _ := time.Parse(time.RFC3339, tt.at)
		if got := m.Active(at); got != tt.want {
			t.Errorf("Active(%s %s) = %v, want %v", at.Weekday(), tt.at, got, tt.want)
		}
	}
	if !m.Covers("anything") || (Maintenance{Services: []string{"a"}}).Covers("b") {
		t.Error("Covers")
	}
}

// FuzzParseWeekly checks that parseWeekly never panics, and that a window
// it accepts has a day and a non-empty range, and answers Active.
func FuzzParseWeekly(f *testing.F) {
	for _, s := range []string{"sun 03:00-04:30", "mon,thu 22:00-02:00", "fri-mon 00:00-23:59", "sat-sat 1:00-2:00", "x", "sun", "sun 3-4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := parseWeekly(s)
		if err != nil {
			return
		}
		days := 0
		for _, d := range w.Days {
			if d {
				days++
			}
		}
		if days == 0 || w.From == w.To || w.From < 0 || w.To >= 24*time.Hour {
			t.Fatalf("parseWeekly(%q) = %+v", s, w)
		}
		Maintenance{Weekly: w}.Active(time.Date(2026, 11, 29, 3, 30, 0, 0, time.UTC))
	})
}

// A weekly window is in wall-clock time of its time zone, also on the days
// daylight saving time begins or ends.
func TestMaintenanceActiveAcrossDST(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	w, err := parseWeekly("sun 04:00-05:00")
	if err != nil {
		t.Fatal(err)
	}
	w.Timezone = "Europe/Berlin"
	m := Maintenance{Weekly: w}
	for _, tt := range []struct {
		at   time.Time
		want bool
	}{
		{time.Date(2026, 3, 29, 4, 30, 0, 0, berlin), true}, // the day clocks go forward
		{time.Date(2026, 3, 29, 5, 30, 0, 0, berlin), false},
		{time.Date(2026, 3, 29, 3, 59, 0, 0, berlin), false},
		{time.Date(2026, 10, 25, 4, 30, 0, 0, berlin), true}, // the day they go back
		{time.Date(2026, 10, 25, 3, 30, 0, 0, berlin), false},
		{time.Date(2026, 10, 25, 5, 0, 0, 0, berlin), false},
	} {
		if got := m.Active(tt.at.UTC()); got != tt.want {
			t.Errorf("Active(%s) = %v, want %v", tt.at, got, tt.want)
		}
	}
}
