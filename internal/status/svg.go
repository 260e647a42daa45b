package status

import (
	"fmt"
	"html"
	"math"
	"strings"
	"time"

	"github.com/labgate/labgate/internal/history"
)

// Colours of states, shared by the page, the badges and the charts.
var stateColor = map[string]string{
	"up":       "#2e7d32",
	"degraded": "#c77700",
	"partial":  "#c77700",
	"down":     "#c62828",
	"unknown":  "#757575",
	"nodata":   "#cfd8dc",
}

func colorOf(state string) string {
	if c, ok := stateColor[state]; ok {
		return c
	}
	return stateColor["unknown"]
}

func esc(s string) string { return html.EscapeString(s) }

// textWidth estimates the width in pixels of s in 11px Verdana, the badge
// font; close enough that labels neither overflow nor float.
func textWidth(s string) int {
	w := 0.0
	for _, r := range s {
		switch {
		case strings.ContainsRune("iljtf.,:;!|'I ", r):
			w += 3.9
		case strings.ContainsRune("mwMW%", r):
			w += 10.5
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			w += 7.5
		default:
			w += 6.8
		}
	}
	return int(math.Ceil(w))
}

// badge draws a flat two-part badge: a grey label and a coloured value.
func badge(label, value, color string) []byte {
	lw, vw := textWidth(label)+10, textWidth(value)+10
	w := lw + vw
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="20" role="img" aria-label="%s: %s">`, w, esc(label), esc(value))
	fmt.Fprintf(&b, `<title>%s: %s</title>`, esc(label), esc(value))
	fmt.Fprintf(&b, `<clipPath id="r"><rect width="%d" height="20" rx="3"/></clipPath><g clip-path="url(#r)">`, w)
	fmt.Fprintf(&b, `<rect width="%d" height="20" fill="#555"/><rect x="%d" width="%d" height="20" fill="%s"/></g>`, lw, lw, vw, color)
	b.WriteString(`<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">`)
	fmt.Fprintf(&b, `<text x="%d" y="14">%s</text><text x="%d" y="14">%s</text></g></svg>`, lw/2, esc(label), lw+vw/2, esc(value))
	return []byte(b.String())
}

// dayLevel says how a day's bar is drawn: up (no trouble), partial (some
// degraded time, or under 1% down), down, or nodata (nothing known).
func dayLevel(b history.Bucket) string {
	u := b.Uptime()
	switch {
	case u < 0:
		return "nodata"
	case b.Seconds[history.Down] == 0 && b.Seconds[history.Degraded] == 0:
		return "up"
	case u >= 0.99:
		return "partial"
	}
	return "down"
}

// barStyle colours the bars by class: inside the page's CSS, and inside a
// standalone SVG.
const barStyle = `.day{fill:#cfd8dc}.day.up{fill:#2e7d32}.day.partial{fill:#c77700}.day.down{fill:#c62828}`

// uptimeBars draws one bar per day, oldest on the left. It scales to the
// width of its container (a phone shows thin bars, not a scrollbar). A
// standalone SVG (a README's image) carries its namespace, size and colours.
func uptimeBars(days []history.Bucket, standalone bool) string {
	const bw, gap, h = 8, 2, 34
	w := max(len(days)*(bw+gap)-gap, 1)
	var b strings.Builder
	if standalone {
		fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="uptime, %d days"><style>%s</style>`, w, h, w, h, len(days), barStyle)
	} else {
		fmt.Fprintf(&b, `<svg class="bars" viewBox="0 0 %d %d" preserveAspectRatio="none" role="img" aria-label="uptime, %d days">`, w, h, len(days))
	}
	for i, d := range days {
		title := d.Start.Format("2006-01-02") + ": no data"
		if u := d.Uptime(); u >= 0 {
			title = fmt.Sprintf("%s: %s up", d.Start.Format("2006-01-02"), percent(u))
			if down := d.Seconds[history.Down]; down > 0 {
				title += fmt.Sprintf(", down %s", (time.Duration(down) * time.Second).String())
			}
		}
		fmt.Fprintf(&b, `<rect class="day %s" x="%d" width="%d" height="%d"><title>%s</title></rect>`, dayLevel(d), i*(bw+gap), bw, h, esc(title))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// percent formats an uptime ratio for people: 100%, 99.95%, 87.3%.
func percent(u float64) string {
	switch {
	case u < 0:
		return "n/a"
	case u >= 1:
		return "100%"
	case u >= 0.999:
		return fmt.Sprintf("%.3f%%", math.Floor(u*1e5)/1e3)
	case u >= 0.99:
		return fmt.Sprintf("%.2f%%", math.Floor(u*1e4)/1e2)
	}
	return fmt.Sprintf("%.1f%%", math.Floor(u*1e3)/1e1)
}

// point is one point of a chart: a time and a min/avg/max band in seconds.
type point struct {
	t             time.Time
	lo, avg, hi   float64
	valid, failed bool // valid: has a value; failed: a failure is marked here
}

// lineChart draws a time series as an SVG chart: the average as a line, the
// minimum to maximum as a band, failures as red ticks, labelled axes.
// unit formats a value for the axis.
func lineChart(title string, pts []point, from, to time.Time, width, height int, unit func(float64) string) []byte {
	return drawChart(title, false, pts, from, to, width, height, unit)
}

// inlineChart is lineChart for a page that says what the chart is already:
// the title is only the image's accessible name.
func inlineChart(title string, pts []point, from, to time.Time, width, height int, unit func(float64) string) []byte {
	return drawChart(title, true, pts, from, to, width, height, unit)
}

func drawChart(title string, inline bool, pts []point, from, to time.Time, width, height int, unit func(float64) string) []byte {
	const padL, padR, padT, padB = 52, 8, 18, 18
	pw, ph := float64(width-padL-padR), float64(height-padT-padB)
	top := 0.0
	for _, p := range pts {
		if p.valid {
			top = max(top, p.hi, p.avg)
		}
	}
	top = niceCeil(top)
	span := to.Sub(from).Seconds()
	x := func(t time.Time) float64 {
		if span <= 0 {
			return padL
		}
		return padL + pw*t.Sub(from).Seconds()/span
	}
	y := func(v float64) float64 { return padT + ph - ph*v/top }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`, width, height, width, height, esc(title))
	fmt.Fprintf(&b, `<title>%s</title><rect width="%d" height="%d" fill="#fff"/>`, esc(title), width, height)
	b.WriteString(`<g font-family="Verdana,DejaVu Sans,sans-serif" font-size="10" fill="#555">`)
	if title != "" && !inline {
		fmt.Fprintf(&b, `<text x="%d" y="12" fill="#222">%s</text>`, padL, esc(title))
	}
	for _, f := range []float64{0, 0.5, 1} {
		yy := y(top * f)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e0e0e0"/>`, padL, width-padR, yy, yy)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`, padL-4, yy+3, esc(unit(top*f)))
	}
	layout := "Jan 2 15:04"
	if span > 2*86400 {
		layout = "Jan 2"
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`, padL, height-4, from.UTC().Format(layout))
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s UTC</text></g>`, width-padR, height-4, to.UTC().Format(layout))
	if top == 0 || !anyValid(pts) {
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11" fill="#757575" text-anchor="middle">no data yet</text>`, padL+int(pw/2), padT+int(ph/2))
	}
	// The band and the line, broken where there is no data.
	for _, run := range runs(pts) {
		if len(run) > 1 {
			b.WriteString(`<polygon fill="#90caf9" fill-opacity="0.45" points="`)
			for _, p := range run {
				fmt.Fprintf(&b, "%.1f,%.1f ", x(p.t), y(p.hi))
			}
			for i := len(run) - 1; i >= 0; i-- {
				fmt.Fprintf(&b, "%.1f,%.1f ", x(run[i].t), y(run[i].lo))
			}
			b.WriteString(`"/>`)
		}
		b.WriteString(`<polyline fill="none" stroke="#1565c0" stroke-width="1.5" points="`)
		for _, p := range run {
			fmt.Fprintf(&b, "%.1f,%.1f ", x(p.t), y(p.avg))
		}
		b.WriteString(`"/>`)
		if len(run) == 1 {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2" fill="#1565c0"/>`, x(run[0].t), y(run[0].avg))
		}
	}
	for _, p := range pts {
		if p.failed {
			fmt.Fprintf(&b, `<line class="failure" x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#c62828" stroke-width="2"/>`, x(p.t), x(p.t), padT+int(ph)-6, padT+int(ph))
		}
	}
	b.WriteString(`</svg>`)
	return []byte(b.String())
}

func anyValid(pts []point) bool {
	for _, p := range pts {
		if p.valid {
			return true
		}
	}
	return false
}

// runs splits pts into runs of consecutive valid points.
func runs(pts []point) [][]point {
	var out [][]point
	var cur []point
	for _, p := range pts {
		if !p.valid {
			if len(cur) > 0 {
				out = append(out, cur)
			}
			cur = nil
			continue
		}
		cur = append(cur, p)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// seconds formats a duration in seconds for an axis: 0, 250ms, 1.5s.
func seconds(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 0.001:
		return fmt.Sprintf("%.0fµs", v*1e6)
	case v < 1:
		return fmt.Sprintf("%.0fms", v*1e3)
	}
	return fmt.Sprintf("%.3gs", v)
}

// bytesPerSecond formats a throughput for an axis.
func bytesPerSecond(v float64) string {
	bits := v * 8
	switch {
	case bits == 0:
		return "0"
	case bits >= 1e9:
		return fmt.Sprintf("%.3g Gbit/s", bits/1e9)
	case bits >= 1e6:
		return fmt.Sprintf("%.3g Mbit/s", bits/1e6)
	}
	return fmt.Sprintf("%.3g kbit/s", bits/1e3)
}

// latencyPoints turns buckets into chart points.
func latencyPoints(bs []history.Bucket, step time.Duration) []point {
	pts := make([]point, len(bs))
	for i, bk := range bs {
		pts[i] = point{t: bk.Start.Add(step / 2), valid: bk.Count > 0, failed: bk.Seconds[history.Down] > 0,
			lo: bk.Min().Seconds(), avg: bk.Avg().Seconds(), hi: bk.Max().Seconds()}
	}
	return pts
}
