package gateway

import (
	"net/http"
	"strconv"
	"strings"
)

// errorPage is a small response that says what went wrong in words for
// people and nothing about the lab's insides: no backend address, no Go
// error text. The cause goes to the log.
type errorPage struct {
	html, text       []byte
	htmlLen, textLen []string
}

var (
	ctHTML  = []string{"text/html; charset=utf-8"}
	ctText  = []string{"text/plain; charset=utf-8"}
	nosniff = []string{"nosniff"}
	noStore = []string{"no-store"}
)

func newErrorPage(code int, msg string) *errorPage {
	title := strconv.Itoa(code) + " " + http.StatusText(code)
	html := "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>" + title +
		"</title><style>body{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#333}</style></head>\n" +
		"<body><h1>" + title + "</h1><p>" + msg + "</p></body></html>\n"
	text := title + "\n" + msg + "\n"
	return &errorPage{
		html: []byte(html), text: []byte(text),
		htmlLen: []string{strconv.Itoa(len(html))}, textLen: []string{strconv.Itoa(len(text))},
	}
}

var errorPages = map[int]*errorPage{
	http.StatusBadRequest:          newErrorPage(http.StatusBadRequest, "The request could not be understood."),
	http.StatusNotFound:            newErrorPage(http.StatusNotFound, "There is nothing here."),
	http.StatusMisdirectedRequest:  newErrorPage(http.StatusMisdirectedRequest, "This connection is for another name. Retry on a new connection."),
	http.StatusBadGateway:          newErrorPage(http.StatusBadGateway, "The service did not answer properly. Try again shortly."),
	http.StatusServiceUnavailable:  newErrorPage(http.StatusServiceUnavailable, "The service is unavailable right now. Try again shortly."),
	http.StatusGatewayTimeout:      newErrorPage(http.StatusGatewayTimeout, "The service took too long to answer. Try again shortly."),
	http.StatusInternalServerError: newErrorPage(http.StatusInternalServerError, "Something went wrong on our side."),
}

// writeError answers with the error page for code: HTML when the client
// accepts it (browsers), plain text otherwise (curl, scripts).
func writeError(w http.ResponseWriter, r *http.Request, code int) {
	p := errorPages[code]
	if p == nil {
		p = errorPages[http.StatusInternalServerError]
		code = http.StatusInternalServerError
	}
	h := w.Header()
	body, n := p.text, p.textLen
	h["Content-Type"] = ctText
	if wantsHTML(r) {
		body, n = p.html, p.htmlLen
		h["Content-Type"] = ctHTML
	}
	h["Content-Length"] = n
	h["X-Content-Type-Options"] = nosniff
	h["Cache-Control"] = noStore
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

func wantsHTML(r *http.Request) bool {
	for _, v := range r.Header["Accept"] {
		if strings.Contains(v, "text/html") {
			return true
		}
	}
	return false
}
