package status

import (
	"net/http"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// FuzzImageType checks that nothing that sniffs as HTML is ever taken for
// an image, whatever type the source declares.
func FuzzImageType(f *testing.F) {
	f.Add("image/png", []byte("\x89PNG\r\n\x1a\n"))
	f.Add("image/svg+xml", []byte(`<svg xmlns="http://www.w3.org/2000/svg"/>`))
	f.Add("image/png", []byte("<!DOCTYPE html><html>"))
	f.Add("image/gif; x=y", []byte("GIF89a"))
	f.Fuzz(func(t *testing.T, declared string, body []byte) {
		ct, err := imageType(declared, body)
		if err != nil {
			return
		}
		if len(body) == 0 || len(ct) < 6 || ct[:6] != "image/" {
			t.Fatalf("imageType(%q, %q) = %q: not an image type", declared, body, ct)
		}
		if sniffed := http.DetectContentType(body); len(sniffed) >= 9 && sniffed[:9] == "text/html" {
			t.Fatalf("imageType(%q, %q) accepted HTML", declared, body)
		}
	})
}

// FuzzHeaders: acceptsGzip and etagMatch read request headers; they must not panic.
func FuzzHeaders(f *testing.F) {
	f.Add("gzip, br;q=0.5", `"abc", W/"def"`)
	f.Add("gzip;q=0", "*")
	f.Fuzz(func(t *testing.T, ae, inm string) {
		_ = acceptsGzip(ae)
		_ = etagMatch(inm, `"abc"`)
	})
}
