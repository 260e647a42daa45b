package config

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var defaultStatus = Status{
	Title:   "labgate status",
	History: HistoryRetention{Raw: 48 * time.Hour, Fine: 14 * 24 * time.Hour, Daily: 400 * 24 * time.Hour},
}

func TestParseStatus(t *testing.T) {
	const y = `version: 1
domain: example.org
services:
  - { name: blog, host: blog, backend: "http://10.0.0.2:80", expose: public }
status:
  title: Our lab
  public: { host: status }
  images:
    - { name: cpu, url: "http://127.0.0.1:3000/render/d-solo/x?panelId=2", interval: 1m, public: true }
    - { name: disk, url: "https://grafana.example.org/render/d-solo/y?panelId=3" }
  history: { raw: 24h }
`
	c, err := Parse("lab.yaml", []byte(y), Options{Getenv: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatal(err)
	}
	u1, _ := url.Parse("http://127.0.0.1:3000/render/d-solo/x?panelId=2")
	u2, _ := url.Parse("https://grafana.example.org/render/d-solo/y?panelId=3")
	want := Status{
		Title:  "Our lab",
		Public: &StatusPublic{Host: "status.example.org"},
		Images: []StatusImage{
			{Name: "cpu", URL: u1, Interval: time.Minute, Public: true},
			{Name: "disk", URL: u2, Interval: 5 * time.Minute},
		},
		History: HistoryRetention{Raw: 24 * time.Hour, Fine: 14 * 24 * time.Hour, Daily: 400 * 24 * time.Hour},
	}
	if diff := cmp.Diff(want, c.Status, cmpOpts); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
}

func TestParseStatusErrors(t *testing.T) {
	const y = `version: 1
domain: example.org
services:
  - { name: blog, host: status, backend: "http://10.0.0.2:80" }
status:
  public: { host: status }
  images:
    - { name: cpu, url: "ftp://x/y" }
    - { name: cpu, url: "http://x/y", interval: 1s }
    - { name: "Bad Name", url: "http://x/y" }
  history: { raw: 10m, daily: 240h }
`
	_, err := Parse("lab.yaml", []byte(y), Options{Getenv: func(string) (string, bool) { return "", false }})
	var got []string
	if err != nil {
		got = strings.Split(err.Error(), "\n")
	}
	want := []string{
		`lab.yaml:6:19: status.public.host: status.example.org is already a host of service blog (services[0])`,
		`lab.yaml:8:25: status.images[0].url: unsupported scheme "ftp" (want http, https)`,
		`lab.yaml:9:15: status.images[1].name: "cpu" is already the name of status.images[0]`,
		`lab.yaml:9:49: status.images[1].interval: at least 10s: the source is asked at most once per interval`,
		`lab.yaml:10:15: status.images[2].name: "Bad Name": use lower case letters, digits and dashes`,
		`lab.yaml:11:19: status.history.raw: at least 1h`,
		`lab.yaml:11:31: status.history.daily: at least 2160h (90 days, the page's uptime bars)`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}
