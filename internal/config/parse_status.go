package config

import (
	"fmt"
	"net/url"
	"time"
)

// Status configures the status page, the image cache and the health history.
type Status struct {
	Title   string
	Public  *StatusPublic // nil: the page is on the admin listener only
	Images  []StatusImage
	History HistoryRetention
}

// StatusPublic is the read-only status page for everyone.
type StatusPublic struct {
	Host string // fully qualified
}

// StatusImage is one image kept by the image cache.
type StatusImage struct {
	Name        string
	URL         *url.URL
	BearerToken Secret
	Interval    time.Duration
	Public      bool
}

// HistoryRetention says how long the health history keeps each resolution.
type HistoryRetention struct {
	Raw   time.Duration
	Fine  time.Duration
	Daily time.Duration
}

func (b *builder) status(f fileStatus, c *Config) Status {
	s := Status{Title: f.Title, History: HistoryRetention{Raw: time.Duration(f.History.Raw), Fine: time.Duration(f.History.Fine), Daily: time.Duration(f.History.Daily)}}
	if f.Public != nil {
		host := b.qualify("status.public.host", f.Public.Host, c.Domain)
		if host != "" {
			for i, svc := range c.Services {
				for _, h := range svc.Hosts {
					if h == host {
						b.fail("status.public.host", "%s is already a host of service %s (services[%d])", host, svc.Name, i)
					}
				}
			}
			s.Public = &StatusPublic{Host: host}
		}
	}
	names := map[string]int{}
	for i, fi := range f.Images {
		path := fmt.Sprintf("status.images[%d]", i)
		if fi == nil {
			b.fail(path, "empty image (give it a name and a url)")
			continue
		}
		if !validName(fi.Name) {
			b.fail(path+".name", "%q: use lower case letters, digits and dashes", fi.Name)
		} else if j, dup := names[fi.Name]; dup {
			b.fail(path+".name", "%q is already the name of status.images[%d]", fi.Name, j)
		}
		names[fi.Name] = i
		img := StatusImage{Name: fi.Name, BearerToken: NewSecret(fi.BearerToken), Interval: time.Duration(fi.Interval), Public: fi.Public}
		img.URL = b.url(path+".url", fi.URL, "http", "https")
		if img.Interval < 10*time.Second {
			b.fail(path+".interval", "at least 10s: the source is asked at most once per interval")
		}
		s.Images = append(s.Images, img)
	}
	h := s.History
	if h.Raw < time.Hour {
		b.fail("status.history.raw", "at least 1h")
	}
	if h.Fine < 24*time.Hour {
		b.fail("status.history.fine", "at least 24h")
	}
	if h.Daily < 90*24*time.Hour {
		b.fail("status.history.daily", "at least 2160h (90 days, the page's uptime bars)")
	}
	return s
}
