package alert

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/health"
)

// snapshot is a health snapshot with the given service states.
func snapshot(states map[string]health.State) health.Snapshot {
	snap := health.Snapshot{Time: time.Now()}
	for _, name := range sortedKeys(states) {
		st := states[name]
		s := health.ServiceStatus{Name: name, State: st}
		if st == health.Down {
			s.Cause, s.Reason = health.CauseChecks, "inside check http: connection refused"
		}
		snap.Services = append(snap.Services, s)
	}
	return snap
}

// homeserver follows the Matrix client-server API for what labgate uses:
// PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId} with a
// Bearer token, idempotent per access token and txnId, and m.replace edits
// of existing events. While dropping is positive, it stores the event and
// then drops the connection without answering, as a proxy timing out would.
type homeserver struct {
	t     *testing.T
	token string
	room  string
	srv   *httptest.Server

	mu       sync.Mutex
	events   []map[string]any // the room's timeline
	ids      []string
	txns     map[string]string // token/txnId -> event id
	dropping int
	requests int
}

func newHomeserver(t *testing.T, token, room string) *homeserver {
	h := &homeserver{t: t, token: token, room: room, txns: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /_matrix/client/v3/rooms/{room}/send/{type}/{txn}", h.send)
	h.srv = httptest.NewServer(mux)
	t.Cleanup(h.srv.Close)
	return h
}

func matrixError(w http.ResponseWriter, code int, errcode, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"errcode": errcode, "error": msg})
}

func (h *homeserver) send(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests++
	auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	switch {
	case !ok:
		matrixError(w, 401, "M_MISSING_TOKEN", "Missing access token")
		return
	case auth != h.token:
		matrixError(w, 401, "M_UNKNOWN_TOKEN", "Unrecognised access token")
		return
	}
	if r.PathValue("room") != h.room {
		matrixError(w, 403, "M_FORBIDDEN", "not in room")
		return
	}
	if r.PathValue("type") != "m.room.message" {
		matrixError(w, 400, "M_UNRECOGNIZED", "labgate only sends m.room.message")
		return
	}
	key := auth + "/" + r.PathValue("txn")
	if id, seen := h.txns[key]; seen {
		// The spec: the same transaction ID returns the same event, once.
		json.NewEncoder(w).Encode(map[string]string{"event_id": id})
		return
	}
	var content map[string]any
	if err := json.NewDecoder(r.Body).Decode(&content); err != nil {
		matrixError(w, 400, "M_NOT_JSON", err.Error())
		return
	}
	if _, ok := content["body"].(string); !ok {
		matrixError(w, 400, "M_BAD_JSON", "body missing")
		return
	}
	if _, ok := content["msgtype"].(string); !ok {
		matrixError(w, 400, "M_BAD_JSON", "msgtype missing")
		return
	}
	if rel, ok := content["m.relates_to"].(map[string]any); ok && rel["rel_type"] == "m.replace" {
		target, _ := rel["event_id"].(string)
		if h.find(target) < 0 {
			matrixError(w, 400, "M_BAD_JSON", "edit of an unknown event "+target)
			return
		}
		if _, ok := content["m.new_content"].(map[string]any); !ok {
			matrixError(w, 400, "M_BAD_JSON", "an edit needs m.new_content")
			return
		}
	}
	id := "$" + strconv.Itoa(len(h.events)+1) + ":hs.test"
	h.events = append(h.events, content)
	h.ids = append(h.ids, id)
	h.txns[key] = id
	if h.dropping > 0 {
		h.dropping--
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	json.NewEncoder(w).Encode(map[string]string{"event_id": id})
}

func (h *homeserver) find(id string) int {
	for i, e := range h.ids {
		if e == id {
			return i
		}
	}
	return -1
}

// shown returns what the room shows: each original event's body after its
// latest edit, and how many events there are in all.
func (h *homeserver) shown() ([]string, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var bodies []string
	index := map[string]int{}
	for i, e := range h.events {
		if rel, ok := e["m.relates_to"].(map[string]any); ok && rel["rel_type"] == "m.replace" {
			nc := e["m.new_content"].(map[string]any)
			bodies[index[rel["event_id"].(string)]] = nc["body"].(string)
			continue
		}
		index[h.ids[i]] = len(bodies)
		bodies = append(bodies, e["body"].(string))
	}
	return bodies, len(h.events)
}

func managerFor(t *testing.T, yaml string, opts Options) (*Manager, func()) {
	t.Helper()
	cfg := parse(t, yaml)
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Backoff == nil {
		opts.Backoff = func(int) time.Duration { return 20 * time.Millisecond }
	}
	m, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	m.Update(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	stop := func() {
		cancel()
		<-done
		m.Close()
	}
	return m, stop
}

const oneService = `
services:
  - { name: vault, host: vault, backend: "http://127.0.0.1:9", alert: [%s] }
`

// Matrix: one message per incident, edited as it evolves; a request whose
// answer was lost is retried with the same txnId and the homeserver keeps
// one event.
func TestMatrix(t *testing.T) {
	hs := newHomeserver(t, "syt_token", "!room:hs.test")
	hs.dropping = 1
	yaml := fmt.Sprintf("version: 1\ndomain: lab.test\nalerts:\n  phone: { matrix: { homeserver: %q, room: \"!room:hs.test\", access_token: syt_token } }\n", hs.srv.URL) +
		fmt.Sprintf(oneService, "phone")
	m, stop := managerFor(t, yaml, Options{})
	defer stop()

	m.Observe(snapshot(map[string]health.State{"vault": health.Down}))
	waitFor(t, "the first message", func() bool { q, _ := m.Queue(); return len(q) == 0 })
	m.Observe(snapshot(map[string]health.State{"vault": health.Degraded}))
	m.Observe(snapshot(map[string]health.State{"vault": health.Up}))
	waitFor(t, "the edits", func() bool { q, _ := m.Queue(); return len(q) == 0 })

	bodies, events := hs.shown()
	if len(bodies) != 1 {
		t.Fatalf("room shows %d messages, want 1 edited: %q", len(bodies), bodies)
	}
	if events != 3 {
		t.Errorf("%d events, want the message and 2 edits", events)
	}
	if !strings.HasPrefix(bodies[0], "✅ Resolved: vault is degraded") {
		t.Errorf("the message now reads %q", bodies[0])
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.requests != 4 {
		t.Errorf("%d requests, want 4 (one retried after its answer was lost)", hs.requests)
	}
}

// ntfy follows ntfy's publish API: POST the message to the topic URL with
// Title, Priority and Tags headers; a protected topic wants a Bearer token.
type ntfyServer struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []map[string]any
}

func newNtfy(t *testing.T, token string) *ntfyServer {
	n := &ntfyServer{}
	prio := map[string]int{"min": 1, "low": 2, "default": 3, "high": 4, "urgent": 5, "max": 5, "1": 1, "2": 2, "3": 3, "4": 4, "5": 5, "": 3}
	n.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			http.Error(w, `{"code":40001,"http":400,"error":"invalid request"}`, 400)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"code":40301,"http":403,"error":"forbidden"}`))
			return
		}
		p, ok := prio[strings.ToLower(r.Header.Get("Priority"))]
		if !ok {
			http.Error(w, `{"code":40007,"http":400,"error":"invalid priority"}`, 400)
			return
		}
		var body strings.Builder
		_, _ = bufio.NewReader(r.Body).WriteTo(&body)
		msg := map[string]any{"id": fmt.Sprintf("m%d", len(n.got)+1), "time": time.Now().Unix(), "event": "message",
			"topic": strings.TrimPrefix(r.URL.Path, "/"), "message": body.String(), "title": r.Header.Get("Title"),
			"priority": p, "tags": strings.Split(r.Header.Get("Tags"), ",")}
		n.mu.Lock()
		n.got = append(n.got, msg)
		n.mu.Unlock()
		json.NewEncoder(w).Encode(msg)
	}))
	t.Cleanup(n.srv.Close)
	return n
}

func TestNtfy(t *testing.T) {
	n := newNtfy(t, "tk_secret")
	yaml := fmt.Sprintf("version: 1\ndomain: lab.test\nalerts:\n  phone: { ntfy: { url: %q, token: tk_secret } }\n", n.srv.URL+"/lab-alerts") +
		fmt.Sprintf(oneService, "phone")
	m, stop := managerFor(t, yaml, Options{})
	defer stop()
	m.Observe(snapshot(map[string]health.State{"vault": health.Down}))
	m.Observe(snapshot(map[string]health.State{"vault": health.Up}))
	waitFor(t, "both messages", func() bool { q, _ := m.Queue(); return len(q) == 0 })
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.got) != 2 {
		t.Fatalf("ntfy got %d messages: %v", len(n.got), n.got)
	}
	first, second := n.got[0], n.got[1]
	if first["topic"] != "lab-alerts" || first["title"] != "labgate: vault is down" || first["priority"] != 5 ||
		!strings.Contains(first["message"].(string), "connection refused") {
		t.Errorf("firing: %v", first)
	}
	if second["priority"] != 3 || second["tags"].([]string)[0] != "white_check_mark" || !strings.HasPrefix(second["message"].(string), "✅ Resolved") {
		t.Errorf("resolved: %v", second)
	}
}

// smtpServer speaks enough of RFC 5321 for a submission: EHLO with AUTH
// PLAIN, MAIL, RCPT, DATA with dot-unstuffing, QUIT. It refuses MAIL before
// AUTH when it has credentials.
type smtpServer struct {
	addr       string
	user, pass string
	tls        *tls.Config // offers STARTTLS, and wants it before AUTH, when set
	mu         sync.Mutex
	mails      []mail
}

type mail struct {
	from string
	to   []string
	data string
}

func newSMTP(t *testing.T, user, pass string) *smtpServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &smtpServer{addr: ln.Addr().String(), user: user, pass: pass}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *smtpServer) serve(c net.Conn) {
	defer func() { c.Close() }()
	r := bufio.NewReader(c)
	say := func(line string) { fmt.Fprintf(c, "%s\r\n", line) }
	say("220 mx.test ESMTP ready")
	authed := s.user == ""
	secure := false
	var m mail
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			say("250-mx.test greets " + arg)
			say("250-8BITMIME")
			if s.tls != nil && !secure {
				say("250-STARTTLS")
			}
			say("250 AUTH PLAIN")
		case "STARTTLS":
			if s.tls == nil || secure {
				say("502 5.5.1 STARTTLS not available")
				continue
			}
			say("220 2.0.0 Ready to start TLS")
			tc := tls.Server(c, s.tls)
			if err := tc.Handshake(); err != nil {
				return
			}
			c, r, secure, authed = tc, bufio.NewReader(tc), true, s.user == ""
		case "HELO":
			say("250 mx.test")
		case "AUTH":
			if s.tls != nil && !secure {
				say("538 5.7.11 Encryption required for requested authentication mechanism")
				continue
			}
			mech, resp, _ := strings.Cut(arg, " ")
			b, err := base64.StdEncoding.DecodeString(resp)
			if strings.ToUpper(mech) != "PLAIN" || err != nil {
				say("504 5.5.4 unrecognized authentication type")
				continue
			}
			parts := strings.Split(string(b), "\x00")
			if len(parts) == 3 && parts[1] == s.user && parts[2] == s.pass {
				authed = true
				say("235 2.7.0 Authentication successful")
			} else {
				say("535 5.7.8 Authentication credentials invalid")
			}
		case "MAIL":
			if !authed {
				say("530 5.7.0 Authentication required")
				continue
			}
			m = mail{from: path(arg)} // FROM:<a@b> [BODY=8BITMIME]
			say("250 2.1.0 Ok")
		case "RCPT":
			if m.from == "" {
				say("503 5.5.1 need MAIL first")
				continue
			}
			m.to = append(m.to, path(arg))
			say("250 2.1.5 Ok")
		case "DATA":
			if len(m.to) == 0 {
				say("554 5.5.1 no valid recipients")
				continue
			}
			say("354 End data with <CR><LF>.<CR><LF>")
			var data strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(strings.TrimPrefix(l, "."))
			}
			m.data = data.String()
			s.mu.Lock()
			s.mails = append(s.mails, m)
			s.mu.Unlock()
			m = mail{}
			say("250 2.0.0 Ok: queued")
		case "RSET":
			m = mail{}
			say("250 2.0.0 Ok")
		case "NOOP":
			say("250 2.0.0 Ok")
		case "QUIT":
			say("221 2.0.0 Bye")
			return
		default:
			say("502 5.5.2 Error: command not recognized")
		}
	}
}

// path is the address between < and > of a MAIL or RCPT argument.
func path(arg string) string {
	_, rest, _ := strings.Cut(arg, "<")
	addr, _, _ := strings.Cut(rest, ">")
	return addr
}

func TestEmail(t *testing.T) {
	s := newSMTP(t, "lab", "pw")
	yaml := fmt.Sprintf("version: 1\ndomain: lab.test\nalerts:\n  mail: { email: { smtp: %q, from: lab@lab.test, to: [me@lab.test], username: lab, password: pw } }\n", s.addr) +
		fmt.Sprintf(oneService, "mail")
	m, stop := managerFor(t, yaml, Options{})
	defer stop()
	m.Observe(snapshot(map[string]health.State{"vault": health.Down}))
	m.Observe(snapshot(map[string]health.State{"vault": health.Up}))
	waitFor(t, "both mails", func() bool { q, _ := m.Queue(); return len(q) == 0 })
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.mails) != 2 {
		t.Fatalf("%d mails", len(s.mails))
	}
	first, second := s.mails[0], s.mails[1]
	if first.from != "lab@lab.test" || first.to[0] != "me@lab.test" {
		t.Errorf("envelope %q -> %q", first.from, first.to)
	}
	for _, want := range []string{"Subject: [labgate] vault is down\r\n", "connection refused"} {
		if !strings.Contains(first.data, want) {
			t.Errorf("first mail lacks %q:\n%s", want, first.data)
		}
	}
	id := regexp.MustCompile(`Message-ID: (<labgate-[0-9a-z]+-1-1@labgate>)\r\n`).FindStringSubmatch(first.data)
	if id == nil {
		t.Fatalf("first mail has no Message-ID of incident 1:\n%s", first.data)
	}
	for _, want := range []string{"Subject: [labgate] Resolved: vault is down\r\n", "In-Reply-To: " + id[1] + "\r\n"} {
		if !strings.Contains(second.data, want) {
			t.Errorf("second mail lacks %q:\n%s", want, second.data)
		}
	}
}

// STARTTLS when the server offers it, before the password goes out.
func TestEmailStartTLS(t *testing.T) {
	certSrv := httptest.NewTLSServer(http.NotFoundHandler()) // for its certificate, valid for 127.0.0.1
	conf := &tls.Config{Certificates: certSrv.TLS.Certificates}
	roots := certSrv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	certSrv.Close()
	s := newSMTP(t, "lab", "pw")
	s.tls = conf
	e := &Email{Addr: s.addr, From: "lab@lab.test", To: []string{"me@lab.test"}, Username: "lab", Password: "pw",
		TLS: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}}
	m := Message{Key: "labgate-1-1", Kind: Firing, Incident: 1, State: health.Down, Title: "vault is down", Time: time.Now(), Started: time.Now()}
	if _, err := e.Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.mails) != 1 || !strings.Contains(s.mails[0].data, "Subject: [labgate] vault is down") {
		t.Errorf("mails %+v", s.mails)
	}
}

// A wrong password is a failure that is retried, not a lost alert.
func TestEmailAuthFailureRetries(t *testing.T) {
	s := newSMTP(t, "lab", "pw")
	yaml := fmt.Sprintf("version: 1\ndomain: lab.test\nalerts:\n  mail: { email: { smtp: %q, from: a@lab.test, to: [b@lab.test], username: lab, password: wrong } }\n", s.addr) +
		fmt.Sprintf(oneService, "mail")
	m, stop := managerFor(t, yaml, Options{})
	defer stop()
	m.Observe(snapshot(map[string]health.State{"vault": health.Down}))
	waitFor(t, "retries", func() bool { q, _ := m.Queue(); return len(q) == 1 && q[0].Attempts >= 2 })
	q, _ := m.Queue()
	if !strings.Contains(q[0].LastError, "535") {
		t.Errorf("last error %q", q[0].LastError)
	}
}
