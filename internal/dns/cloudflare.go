package dns

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Cloudflare is a zone on Cloudflare, written through the v4 API with an API
// token that may edit the zone's DNS (Zone → DNS → Edit, on that zone).
//
// The API has no transactions: before each change the RRset and its
// ownership record are read again and compared with what the plan saw, so a
// record edited in the dashboard in the meantime is not overwritten (the
// change fails with ErrChanged). The window left is the few milliseconds
// between that read and the writes.
type Cloudflare struct {
	Token   string
	Zone    string       // the zone's name, without trailing dot
	Client  *http.Client // nil: http.DefaultClient
	BaseURL string       // "": https://api.cloudflare.com/client/v4

	mu     sync.Mutex
	zoneID string
}

// cfRecord is a DNS record as the API reads and writes it.
type cfRecord struct {
	ID      string `json:"id,omitempty"`
	Type    string `json:"type"`
	Name    string `json:"name"`
	Content string `json:"content"`
	TTL     int    `json:"ttl"`
	Proxied *bool  `json:"proxied,omitempty"`
}

// cfResponse is the envelope of every API answer.
type cfResponse struct {
	Success    bool            `json:"success"`
	Errors     []cfMessage     `json:"errors"`
	Result     json.RawMessage `json:"result"`
	ResultInfo *struct {
		Page       int `json:"page"`
		PerPage    int `json:"per_page"`
		TotalPages int `json:"total_pages"`
		Count      int `json:"count"`
		TotalCount int `json:"total_count"`
	} `json:"result_info"`
}

type cfMessage struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// cfError is an API call that did not succeed.
type cfError struct {
	Method, Path string
	Status       int
	Errors       []cfMessage
}

func (e *cfError) Error() string {
	var msgs []string
	for _, m := range e.Errors {
		msgs = append(msgs, fmt.Sprintf("%s (code %d)", m.Message, m.Code))
	}
	if len(msgs) == 0 {
		msgs = append(msgs, http.StatusText(e.Status))
	}
	hint := ""
	if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden {
		hint = ": check dns.provider.api_token (a token with Zone → DNS → Edit on the zone)"
	}
	return fmt.Sprintf("cloudflare %s %s: HTTP %d: %s%s", e.Method, e.Path, e.Status, strings.Join(msgs, "; "), hint)
}

func (p *Cloudflare) client() *http.Client {
	if p.Client != nil {
		return p.Client
	}
	return http.DefaultClient
}

// call makes one API request and returns its envelope.
func (p *Cloudflare) call(ctx context.Context, method, path string, query url.Values, body any) (*cfResponse, error) {
	base := p.BaseURL
	if base == "" {
		base = "https://api.cloudflare.com/client/v4"
	}
	u := strings.TrimSuffix(base, "/") + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+p.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("cloudflare %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("cloudflare %s %s: %w", method, path, err)
	}
	var r cfResponse
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("cloudflare %s %s: HTTP %d, not an API answer: %.200q", method, path, resp.StatusCode, data)
	}
	if !r.Success || resp.StatusCode >= 300 {
		return nil, &cfError{Method: method, Path: path, Status: resp.StatusCode, Errors: r.Errors}
	}
	return &r, nil
}

// id returns the zone's id, looked up by name once.
func (p *Cloudflare) id(ctx context.Context) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.zoneID != "" {
		return p.zoneID, nil
	}
	r, err := p.call(ctx, http.MethodGet, "/zones", url.Values{"name": {p.Zone}}, nil)
	if err != nil {
		return "", err
	}
	var zones []struct{ ID, Name string }
	if err := json.Unmarshal(r.Result, &zones); err != nil {
		return "", fmt.Errorf("cloudflare GET /zones: %w", err)
	}
	for _, z := range zones {
		if strings.EqualFold(z.Name, p.Zone) {
			p.zoneID = z.ID
			return z.ID, nil
		}
	}
	return "", fmt.Errorf("cloudflare: no zone %s is visible to this token (is the zone on this account, and does the token include it?)", p.Zone)
}

// list returns the zone's records matching query (all when nil), page by page.
func (p *Cloudflare) list(ctx context.Context, query url.Values) ([]cfRecord, error) {
	zid, err := p.id(ctx)
	if err != nil {
		return nil, err
	}
	var out []cfRecord
	for page := 1; ; page++ {
		q := url.Values{"page": {strconv.Itoa(page)}, "per_page": {"100"}}
		for k, v := range query {
			q[k] = v
		}
		r, err := p.call(ctx, http.MethodGet, "/zones/"+zid+"/dns_records", q, nil)
		if err != nil {
			return nil, err
		}
		var recs []cfRecord
		if err := json.Unmarshal(r.Result, &recs); err != nil {
			return nil, fmt.Errorf("cloudflare: listing records: %w", err)
		}
		out = append(out, recs...)
		if r.ResultInfo == nil || page >= r.ResultInfo.TotalPages || len(recs) == 0 {
			return out, nil
		}
	}
}

// Records lists the zone.
func (p *Cloudflare) Records(ctx context.Context) ([]Record, error) {
	recs, err := p.list(ctx, nil)
	if err != nil {
		return nil, err
	}
	return group(recs), nil
}

// group turns API records (one per value) into RRsets, in listing order.
func group(recs []cfRecord) []Record {
	sets := map[Key]*Record{}
	var keys []Key
	for _, c := range recs {
		k := Key{normName(c.Name), strings.ToUpper(c.Type)}
		s, ok := sets[k]
		if !ok {
			s = &Record{Name: k.Name, Type: k.Type, TTL: uint32(c.TTL)}
			sets[k] = s
			keys = append(keys, k)
		}
		s.Values = append(s.Values, cfValue(c))
		s.TTL = min(s.TTL, uint32(c.TTL))
		s.Proxied = s.Proxied || c.Proxied != nil && *c.Proxied
	}
	out := make([]Record, 0, len(keys))
	for _, k := range keys {
		out = append(out, Normalize(*sets[k]))
	}
	return out
}

// cfValue is the value of an API record as Record holds it: TXT contents lose
// the quotes of their presentation form ("a" "b" is ab).
func cfValue(c cfRecord) string {
	if !strings.EqualFold(c.Type, "TXT") {
		return c.Content
	}
	s := strings.TrimSpace(c.Content)
	if !strings.HasPrefix(s, `"`) {
		return c.Content
	}
	var b strings.Builder
	for len(s) > 0 {
		if s[0] != '"' {
			return c.Content
		}
		end := 1
		for end < len(s) && s[end] != '"' {
			if s[end] == '\\' {
				end++
			}
			end++
		}
		if end >= len(s) {
			return c.Content
		}
		b.WriteString(strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(s[1:end]))
		s = strings.TrimSpace(s[end+1:])
	}
	return b.String()
}

// cfContent is the content the API is sent for a value of type typ.
func cfContent(typ, v string) string {
	if typ != "TXT" {
		return v
	}
	var parts []string
	for _, c := range chunks(v) {
		parts = append(parts, `"`+strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(c)+`"`)
	}
	return strings.Join(parts, " ")
}

func (p *Cloudflare) rrset(ctx context.Context, name, typ string) ([]cfRecord, error) {
	q := url.Values{"name": {name}}
	if typ != "" {
		q.Set("type", typ)
	}
	return p.list(ctx, q)
}

// values returns the normalized values of API records of one RRset.
func values(recs []cfRecord) []string {
	r := Record{}
	for _, c := range recs {
		r.Type = strings.ToUpper(c.Type)
		r.Values = append(r.Values, cfValue(c))
	}
	return Normalize(r).Values
}

// Apply makes one change after checking that the RRset and its ownership
// record are still what the plan saw.
func (p *Cloudflare) Apply(ctx context.Context, c Change) error {
	zid, err := p.id(ctx)
	if err != nil {
		return err
	}
	rec := c.Record
	cur, err := p.rrset(ctx, rec.Name, rec.Type)
	if err != nil {
		return err
	}
	var own []cfRecord
	if c.Owner.Name != "" {
		if own, err = p.rrset(ctx, c.Owner.Name, "TXT"); err != nil {
			return err
		}
	}
	switch c.Action {
	case Create:
		if len(cur) > 0 || len(own) > 0 {
			return fmt.Errorf("%w (%s %s or its ownership record appeared)", ErrChanged, rec.Name, rec.Type)
		}
		all, err := p.rrset(ctx, rec.Name, "")
		if err != nil {
			return err
		}
		for _, r := range all {
			if rec.Type == "CNAME" || r.Type == "CNAME" {
				return fmt.Errorf("%w (%s now has a %s record, and a CNAME must be alone at its name)", ErrChanged, rec.Name, r.Type)
			}
		}
		// The ownership record first (a record never stands without it),
		// and taken back with what was made if the record cannot be
		// written: left alone, it would claim whatever is put at that name
		// later, by hand.
		var made []string
		undo := func(err error) error {
			for _, id := range slices.Backward(made) {
				if rerr := p.remove(context.WithoutCancel(ctx), zid, id); rerr != nil {
					return fmt.Errorf("%w (and removing what was made of it failed: %v)", err, rerr)
				}
			}
			return err
		}
		if c.Owner.Name != "" {
			id, err := p.create(ctx, zid, c.Owner, c.Owner.Values[0])
			if err != nil {
				return err
			}
			made = append(made, id)
		}
		for _, v := range rec.Values {
			id, err := p.create(ctx, zid, rec, v)
			if err != nil {
				return undo(err)
			}
			made = append(made, id)
		}
		return nil
	case Update, Delete:
		if c.Owner.Name != "" && !slices.Equal(values(own), Normalize(c.Owner).Values) {
			return fmt.Errorf("%w (the ownership record %s changed)", ErrChanged, c.Owner.Name)
		}
		was := c.Old
		if c.Action == Delete {
			was = c.Record
		}
		if !slices.Equal(values(cur), Normalize(was).Values) {
			return fmt.Errorf("%w (%s %s is now %s)", ErrChanged, rec.Name, rec.Type, strings.Join(values(cur), ", "))
		}
	default:
		return fmt.Errorf("unknown action %q", c.Action)
	}
	if c.Action == Delete {
		for _, r := range cur {
			if err := p.remove(ctx, zid, r.ID); err != nil {
				return err
			}
		}
		for _, r := range own {
			if err := p.remove(ctx, zid, r.ID); err != nil {
				return err
			}
		}
		return nil
	}
	// Update: keep records whose value stays, move the others to new values
	// (in place: a CNAME cannot have two), then add or remove the rest.
	var spare []cfRecord
	todo := slices.Clone(rec.Values)
	for _, r := range cur {
		if i := slices.Index(todo, cfValue(r)); i >= 0 {
			todo = slices.Delete(todo, i, i+1)
			if cfTTL(rec) != r.TTL || rec.Proxied != (r.Proxied != nil && *r.Proxied) {
				if err := p.patch(ctx, zid, r.ID, rec, cfValue(r)); err != nil {
					return err
				}
			}
			continue
		}
		spare = append(spare, r)
	}
	for _, v := range todo {
		if len(spare) > 0 {
			if err := p.patch(ctx, zid, spare[0].ID, rec, v); err != nil {
				return err
			}
			spare = spare[1:]
			continue
		}
		if _, err := p.create(ctx, zid, rec, v); err != nil {
			return err
		}
	}
	for _, r := range spare {
		if err := p.remove(ctx, zid, r.ID); err != nil {
			return err
		}
	}
	return nil
}

// cfTTL is the TTL the API is sent: 1 (automatic) for proxied records.
func cfTTL(r Record) int {
	if r.Proxied || r.TTL == 0 {
		return 1
	}
	return int(max(r.TTL, 60)) // the API's smallest TTL besides 1
}

func (p *Cloudflare) body(r Record, v string) cfRecord {
	b := cfRecord{Type: r.Type, Name: r.Name, Content: cfContent(r.Type, v), TTL: cfTTL(r)}
	if r.Type == "A" || r.Type == "AAAA" || r.Type == "CNAME" {
		proxied := r.Proxied
		b.Proxied = &proxied
	}
	return b
}

// create makes one record and returns its id.
func (p *Cloudflare) create(ctx context.Context, zid string, r Record, v string) (string, error) {
	resp, err := p.call(ctx, http.MethodPost, "/zones/"+zid+"/dns_records", nil, p.body(r, v))
	if err != nil {
		return "", err
	}
	var made cfRecord
	if err := json.Unmarshal(resp.Result, &made); err != nil || made.ID == "" {
		return "", fmt.Errorf("cloudflare POST /zones/%s/dns_records: the answer names no record id", zid)
	}
	return made.ID, nil
}

func (p *Cloudflare) patch(ctx context.Context, zid, id string, r Record, v string) error {
	_, err := p.call(ctx, http.MethodPatch, "/zones/"+zid+"/dns_records/"+id, nil, p.body(r, v))
	return err
}

func (p *Cloudflare) remove(ctx context.Context, zid, id string) error {
	_, err := p.call(ctx, http.MethodDelete, "/zones/"+zid+"/dns_records/"+id, nil, nil)
	return err
}

// SetTXT adds one TXT value at fqdn, unless it is there already.
func (p *Cloudflare) SetTXT(ctx context.Context, fqdn, value string) error {
	name := normName(fqdn)
	if !InZone(name, p.Zone) {
		return fmt.Errorf("%s is not in the zone %s", name, p.Zone)
	}
	zid, err := p.id(ctx)
	if err != nil {
		return err
	}
	cur, err := p.rrset(ctx, name, "TXT")
	if err != nil {
		return err
	}
	if slices.Contains(values(cur), value) {
		return nil
	}
	_, err = p.create(ctx, zid, Record{Name: name, Type: "TXT", TTL: 60}, value)
	return err
}

// DeleteTXT removes every record at fqdn holding exactly value.
func (p *Cloudflare) DeleteTXT(ctx context.Context, fqdn, value string) error {
	name := normName(fqdn)
	zid, err := p.id(ctx)
	if err != nil {
		return err
	}
	cur, err := p.rrset(ctx, name, "TXT")
	if err != nil {
		return err
	}
	for _, r := range cur {
		if cfValue(r) == value {
			if err := p.remove(ctx, zid, r.ID); err != nil {
				return err
			}
		}
	}
	return nil
}
