package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/smtp"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/health"
)

// newSender returns the sender of a configured receiver.
func newSender(r config.Receiver, client *http.Client) Sender {
	switch {
	case r.Matrix != nil:
		return &Matrix{Homeserver: r.Matrix.Homeserver, Room: r.Matrix.Room, Token: r.Matrix.AccessToken.Value(), Client: client}
	case r.Webhook != nil:
		return &Webhook{URL: r.Webhook.URL, Secret: r.Webhook.Secret.Value(), Client: client}
	case r.Ntfy != nil:
		return &Ntfy{URL: r.Ntfy.URL, Token: r.Ntfy.Token.Value(), Client: client}
	case r.Email != nil:
		return &Email{Addr: r.Email.SMTP, From: r.Email.From, To: r.Email.To, Username: r.Email.Username, Password: r.Email.Password.Value()}
	}
	return nil
}

// Text is a message as one short text for people.
func Text(m Message) string {
	var b strings.Builder
	icon := "🔴"
	if m.State == health.Degraded {
		icon = "🟠"
	}
	switch m.Kind {
	case Resolved:
		fmt.Fprintf(&b, "✅ Resolved: %s (after %s)", m.Title, duration(m.Time.Sub(m.Started)))
		return b.String()
	case Reminder:
		fmt.Fprintf(&b, "🔁 Still %s: %s (for %s)", m.State, m.Title, duration(m.Time.Sub(m.Started)))
	case Update:
		fmt.Fprintf(&b, "%s %s (updated)", icon, m.Title)
	default:
		fmt.Fprintf(&b, "%s %s", icon, m.Title)
	}
	if m.Detail != "" {
		b.WriteString("\n" + m.Detail)
	}
	fmt.Fprintf(&b, "\nsince %s", m.Started.UTC().Format("2006-01-02 15:04 UTC"))
	return b.String()
}

// duration rounds d for people: seconds under a minute, minutes above.
func duration(d time.Duration) string {
	if d < time.Minute {
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}

// httpError is a receiver's answer that is not a success.
func httpError(res *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(res.Body, 512))
	return fmt.Errorf("%s answered %s: %s", res.Request.URL.Host, res.Status, strings.TrimSpace(string(body)))
}

// hideURL keeps only the host of the URL in a failed request's error: the
// error is logged and kept in the queue, and a webhook's URL often holds
// its secret (https://discord.com/api/webhooks/<id>/<token>, ?token=…).
func hideURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		host := ue.URL
		if u, perr := url.Parse(ue.URL); perr == nil {
			host = u.Host
		}
		return fmt.Errorf("%s %s: %w", ue.Op, host, ue.Err)
	}
	return err
}

// Webhook posts each message as JSON, signed with HMAC-SHA256 when Secret
// is set: X-Labgate-Signature: sha256=<hex of HMAC(secret, body)>. The
// Idempotency-Key header (and the id field) is the same on every retry.
type Webhook struct {
	URL    *url.URL
	Secret string
	Client *http.Client
}

// webhookBody is the JSON a webhook receives.
type webhookBody struct {
	Message
	Text string `json:"text"`
}

// Send implements Sender.
func (w *Webhook) Send(ctx context.Context, m Message) (string, error) {
	body, err := json.Marshal(webhookBody{Message: m, Text: Text(m)})
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL.String(), bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "labgate")
	req.Header.Set("Idempotency-Key", m.Key)
	if w.Secret != "" {
		req.Header.Set("X-Labgate-Signature", "sha256="+Sign([]byte(w.Secret), body))
	}
	res, err := w.Client.Do(req)
	if err != nil {
		return "", hideURL(err)
	}
	defer res.Body.Close()
	if res.StatusCode/100 != 2 {
		return "", httpError(res)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	return "", nil
}

// Sign is the hex HMAC-SHA256 of body with key, as in X-Labgate-Signature.
func Sign(key, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// Ntfy publishes each message to an ntfy topic (POST to the topic URL with
// Title, Priority and Tags headers).
type Ntfy struct {
	URL    *url.URL
	Token  string
	Client *http.Client
}

// Send implements Sender.
func (n *Ntfy) Send(ctx context.Context, m Message) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.URL.String(), strings.NewReader(Text(m)))
	if err != nil {
		return "", err
	}
	prio, tags := "urgent", "rotating_light"
	switch {
	case m.Kind == Resolved:
		prio, tags = "default", "white_check_mark"
	case m.State == health.Degraded:
		prio, tags = "high", "warning"
	case m.Kind == Reminder:
		prio, tags = "high", "repeat"
	}
	req.Header.Set("Title", "labgate: "+m.Title)
	req.Header.Set("Priority", prio)
	req.Header.Set("Tags", tags)
	req.Header.Set("User-Agent", "labgate")
	if n.Token != "" {
		req.Header.Set("Authorization", "Bearer "+n.Token)
	}
	res, err := n.Client.Do(req)
	if err != nil {
		return "", hideURL(err)
	}
	defer res.Body.Close()
	if res.StatusCode/100 != 2 {
		return "", httpError(res)
	}
	var out struct {
		ID string `json:"id"`
	}
	_ = json.NewDecoder(io.LimitReader(res.Body, 64<<10)).Decode(&out)
	return out.ID, nil
}

// Matrix posts to a room with the client-server API. The first message of
// an incident is a new event; its updates and its resolution replace it
// (m.replace edits), reminders reply to it. The txnId is the message's key,
// so a retried request is deduplicated by the homeserver.
type Matrix struct {
	Homeserver *url.URL
	Room       string // a room id, or an alias resolved once
	Token      string
	Client     *http.Client

	mu     sync.Mutex
	roomID string
}

type matrixContent struct {
	MsgType       string          `json:"msgtype"`
	Body          string          `json:"body"`
	Format        string          `json:"format,omitempty"`
	FormattedBody string          `json:"formatted_body,omitempty"`
	NewContent    *matrixContent  `json:"m.new_content,omitempty"`
	RelatesTo     *matrixRelation `json:"m.relates_to,omitempty"`
}

type matrixRelation struct {
	RelType   string            `json:"rel_type,omitempty"`
	EventID   string            `json:"event_id,omitempty"`
	InReplyTo map[string]string `json:"m.in_reply_to,omitempty"`
}

// Send implements Sender.
func (mx *Matrix) Send(ctx context.Context, m Message) (string, error) {
	room, err := mx.room(ctx)
	if err != nil {
		return "", err
	}
	text := Text(m)
	content := matrixContent{MsgType: "m.text", Body: text, Format: "org.matrix.custom.html",
		FormattedBody: strings.ReplaceAll(html.EscapeString(text), "\n", "<br>")}
	switch {
	case m.Ref == "":
	case m.Kind == Reminder:
		content.RelatesTo = &matrixRelation{InReplyTo: map[string]string{"event_id": m.Ref}}
	default:
		inner := content
		content = matrixContent{MsgType: "m.text", Body: "* " + text, NewContent: &inner,
			RelatesTo: &matrixRelation{RelType: "m.replace", EventID: m.Ref}}
	}
	body, err := json.Marshal(content)
	if err != nil {
		return "", err
	}
	u := mx.Homeserver.JoinPath("_matrix/client/v3/rooms", room, "send/m.room.message", m.Key)
	var out struct {
		EventID string `json:"event_id"`
	}
	if err := mx.do(ctx, http.MethodPut, u, body, &out); err != nil {
		return "", err
	}
	if m.Ref != "" {
		return m.Ref, nil
	}
	return out.EventID, nil
}

// room returns the room id, resolving an alias once.
func (mx *Matrix) room(ctx context.Context) (string, error) {
	mx.mu.Lock()
	defer mx.mu.Unlock()
	if mx.roomID != "" {
		return mx.roomID, nil
	}
	if !strings.HasPrefix(mx.Room, "#") {
		mx.roomID = mx.Room
		return mx.roomID, nil
	}
	var out struct {
		RoomID string `json:"room_id"`
	}
	if err := mx.do(ctx, http.MethodGet, mx.Homeserver.JoinPath("_matrix/client/v3/directory/room", mx.Room), nil, &out); err != nil {
		return "", fmt.Errorf("resolving room alias %s: %w", mx.Room, err)
	}
	mx.roomID = out.RoomID
	return mx.roomID, nil
}

func (mx *Matrix) do(ctx context.Context, method string, u *url.URL, body []byte, out any) error {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), r)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+mx.Token)
	req.Header.Set("User-Agent", "labgate")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := mx.Client.Do(req)
	if err != nil {
		return hideURL(err)
	}
	defer res.Body.Close()
	if res.StatusCode/100 != 2 {
		return httpError(res)
	}
	return json.NewDecoder(io.LimitReader(res.Body, 64<<10)).Decode(out)
}

// Email sends each message as a mail over SMTP: STARTTLS when the server
// offers it, AUTH PLAIN when Username is set (net/smtp refuses to send a
// password unencrypted except to localhost). Messages of one incident
// thread under its first (In-Reply-To).
type Email struct {
	Addr     string // host:port
	From     string
	To       []string
	Username string
	Password string
	// TLS configures STARTTLS; nil: verify against the system's roots.
	TLS *tls.Config
}

// Send implements Sender.
func (e *Email) Send(ctx context.Context, m Message) (string, error) {
	host, _, err := net.SplitHostPort(e.Addr)
	if err != nil {
		return "", err
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", e.Addr)
	if err != nil {
		return "", err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return "", err
	}
	defer c.Close()
	if err := c.Hello("labgate"); err != nil {
		return "", err
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		conf := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if e.TLS != nil {
			conf = e.TLS.Clone()
		}
		if err := c.StartTLS(conf); err != nil {
			return "", fmt.Errorf("STARTTLS: %w", err)
		}
	}
	if e.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", e.Username, e.Password, host)); err != nil {
			return "", fmt.Errorf("AUTH: %w", err)
		}
	}
	if err := c.Mail(e.From); err != nil {
		return "", err
	}
	for _, to := range e.To {
		if err := c.Rcpt(to); err != nil {
			return "", err
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := w.Write(e.mail(m)); err != nil {
		return "", err
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	_ = c.Quit()
	return "", nil
}

func (e *Email) mail(m Message) []byte {
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	h("From", e.From)
	h("To", strings.Join(e.To, ", "))
	subject := "[labgate] " + m.Title
	if m.Kind == Resolved {
		subject = "[labgate] Resolved: " + m.Title
	}
	h("Subject", mimeWord(subject))
	h("Date", m.Time.Format(time.RFC1123Z))
	h("Message-ID", "<"+m.Key+"@labgate>")
	if m.Kind != Firing {
		first := "<" + firstKey(m.Key) + "@labgate>"
		h("In-Reply-To", first)
		h("References", first)
	}
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	// Quoted-printable: a line of a mail is at most 998 characters (RFC
	// 5321), and a relay incident's first line names every service it cut
	// off. The DATA writer of net/smtp escapes leading dots.
	h("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	crlf := strings.NewReplacer("\r\n", "\r\n", "\r", "\r\n", "\n", "\r\n") // a mail's lines end with CRLF
	_, _ = qp.Write([]byte(crlf.Replace(Text(m)) + "\r\n"))
	_ = qp.Close()
	return b.Bytes()
}

// firstKey is the key of the first message of key's incident: keys are
// the incident's prefix, a dash and the message's number.
func firstKey(key string) string {
	if i := strings.LastIndexByte(key, '-'); i >= 0 {
		return key[:i] + "-1"
	}
	return key
}

// mimeWord makes s a header value: control characters (a line break in a
// title would start a header of its own) become spaces, and a value that
// is not plain short ASCII is encoded (RFC 2047) as words of at most 75
// characters on folded lines, so that no line exceeds the limits of RFC
// 5322 however many services a title names.
func mimeWord(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	plain := len(s) <= 66 // "Subject: [labgate] " and the rest within 78
	for _, r := range s {
		if r > 127 {
			plain = false
		}
	}
	if plain {
		return s
	}
	var words []string
	for len(s) > 0 {
		// 12 characters of =?utf-8?q??= leave 63 for the encoded text.
		n, size := 0, 0
		for n < len(s) {
			_, l := utf8.DecodeRuneInString(s[n:])
			w := len(qEncode(s[n : n+l]))
			if size+w > 63 {
				break
			}
			size += w
			n += l
		}
		words = append(words, "=?utf-8?q?"+qEncode(s[:n])+"?=")
		s = s[n:]
	}
	return strings.Join(words, "\r\n ")
}
func qEncode(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		switch {
		case c == ' ':
			b.WriteByte('_')
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "=%02X", c)
		}
	}
	return b.String()
}
