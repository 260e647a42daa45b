package gitops

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
)

// maxWebhookBody bounds a push event's body; larger ones are refused.
const maxWebhookBody = 4 << 20

// Webhook returns the handler of a forge's push webhook (GitHub, Gitea,
// Forgejo, Gogs). The body must be signed with HMAC-SHA256 and secret:
// GitHub's X-Hub-Signature-256 ("sha256=<hex>") or Gitea's
// X-Gitea-Signature / X-Gogs-Signature ("<hex>"). A valid push to the
// followed branch triggers a fetch; one to another branch is ignored. With
// an empty secret every request is refused. A replayed request only triggers
// a fetch, at most one every few seconds however many arrive.
func (s *Syncer) Webhook(secret string) http.Handler {
	key := []byte(secret)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "POST a push event here", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "cannot read the body", http.StatusBadRequest)
			return
		}
		if len(key) == 0 {
			// Anyone can sign with an empty key: such a hook is no lock.
			s.opts.Log.Warn("git webhook refused: no secret is configured", "remote", r.RemoteAddr)
			http.Error(w, "the webhook has no secret configured", http.StatusForbidden)
			return
		}
		sig, ok := signature(r.Header)
		if !ok {
			s.opts.Log.Warn("git webhook refused: no signature", "remote", r.RemoteAddr)
			http.Error(w, "missing signature (set the webhook's secret)", http.StatusUnauthorized)
			return
		}
		mac := hmac.New(sha256.New, key)
		mac.Write(body)
		if !hmac.Equal(mac.Sum(nil), sig) {
			s.opts.Log.Warn("git webhook refused: wrong signature", "remote", r.RemoteAddr)
			http.Error(w, "wrong signature", http.StatusForbidden)
			return
		}
		event := r.Header.Get("X-GitHub-Event")
		if event == "" {
			event = r.Header.Get("X-Gitea-Event")
		}
		if event == "" {
			event = r.Header.Get("X-Gogs-Event")
		}
		if event == "ping" {
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, "pong\n")
			return
		}
		if event != "" && event != "push" {
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, "ignored: not a push\n")
			return
		}
		var push struct {
			Ref string `json:"ref"`
		}
		if err := json.Unmarshal(body, &push); err != nil || push.Ref == "" {
			http.Error(w, "not a push event (no ref)", http.StatusBadRequest)
			return
		}
		if push.Ref != "refs/heads/"+s.opts.Branch {
			s.opts.Log.Debug("git webhook: push to another branch ignored", "ref", push.Ref)
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, "ignored: not the followed branch\n")
			return
		}
		s.opts.Log.Info("git webhook: push received, fetching", "ref", push.Ref)
		s.Trigger()
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, "fetching\n")
	})
}

// signature returns the HMAC the forge sent.
func signature(h http.Header) ([]byte, bool) {
	var hexSig string
	if v := h.Get("X-Hub-Signature-256"); v != "" {
		s, ok := strings.CutPrefix(v, "sha256=")
		if !ok {
			return nil, false
		}
		hexSig = s
	} else if v := h.Get("X-Gitea-Signature"); v != "" {
		hexSig = v
	} else if v := h.Get("X-Gogs-Signature"); v != "" {
		hexSig = v
	} else {
		return nil, false
	}
	b, err := hex.DecodeString(strings.TrimSpace(hexSig))
	if err != nil || len(b) != sha256.Size {
		return []byte{}, true // present but malformed: a wrong signature
	}
	return b, true
}
