package tlspeek

import (
	"errors"
	"strings"
)

// ClientHello is what a peek reads from a TLS ClientHello without
// decrypting anything: the server name the client asked for and the
// application protocols it offered, most preferred first.
type ClientHello struct {
	// ServerName is the SNI host_name, lowercased; empty if absent.
	ServerName string
	// ALPN lists the offered protocols in the client's order; nil if absent.
	ALPN []string
}

// ErrNotHello is wrapped by every ParseClientHello error.
var ErrNotHello = errors.New("tlspeek: not a TLS ClientHello")

// TLS wire constants (RFC 8446, RFC 6066, RFC 7301).
const (
	recordHeaderLen    = 5
	maxRecordLen       = 1 << 14 // TLSPlaintext.length
	recordHandshake    = 0x16
	handshakeHello     = 0x01
	extServerName      = 0
	extALPN            = 16
	sniHostName        = 0
	MaxPeek            = 16 << 10 // bytes read before giving up on a ClientHello
	maxServerNameBytes = 253
)

// Status says whether a peek buffer holds a complete ClientHello.
type Status int

const (
	More     Status = iota // a TLS handshake so far: read on
	Complete               // the whole ClientHello message is in
	NotTLS                 // not a TLS ClientHello (or too large): forward as is
)

// Scan reports whether buf, the first bytes a client sent, holds a
// complete ClientHello handshake message, possibly spread over several
// handshake records. With Complete it returns the message (type and
// length included): a subslice of buf when it sits in the first record, else
// assembled in scratch.
func Scan(buf, scratch []byte) ([]byte, Status) {
	msg := scratch[:0]
	single := true
	for off := 0; ; {
		if len(buf)-off < recordHeaderLen {
			if len(buf) > off && buf[off] != recordHandshake {
				return nil, NotTLS
			}
			return nil, More
		}
		h := buf[off : off+recordHeaderLen]
		n := int(h[3])<<8 | int(h[4])
		if h[0] != recordHandshake || h[1] != 3 || n == 0 || n > maxRecordLen {
			return nil, NotTLS
		}
		if off+recordHeaderLen+n > MaxPeek {
			return nil, NotTLS
		}
		if len(buf) < off+recordHeaderLen+n {
			return nil, More
		}
		frag := buf[off+recordHeaderLen : off+recordHeaderLen+n]
		if single && off == 0 && len(frag) >= 4 {
			if frag[0] != handshakeHello {
				return nil, NotTLS
			}
			if need := 4 + (int(frag[1])<<16 | int(frag[2])<<8 | int(frag[3])); need <= len(frag) {
				return frag[:need], Complete
			}
		}
		single = false
		msg = append(msg, frag...)
		if len(msg) >= 4 {
			if msg[0] != handshakeHello {
				return nil, NotTLS
			}
			need := 4 + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
			if need > MaxPeek {
				return nil, NotTLS
			}
			if need <= len(msg) {
				return msg[:need], Complete
			}
		}
		off += recordHeaderLen + n
	}
}

// ParseClientHello parses one TLS ClientHello handshake message (the
// handshake header of type 1 and a 3-byte length, then the body: not the
// record layer) and returns its server name and ALPN protocols. The parser is
// strict: lengths must add up exactly, an extension may appear only once, a
// server name must be a plausible DNS name and every ALPN protocol non-empty.
func ParseClientHello(msg []byte) (ClientHello, error) {
	var ch ClientHello
	s := cursor(msg)
	typ, ok := s.u8()
	if !ok || typ != handshakeHello {
		return ch, helloErr("not a ClientHello")
	}
	body, ok := s.vec(3)
	if !ok || len(s) != 0 {
		return ch, helloErr("bad handshake length")
	}
	b := cursor(body)
	if v, ok := b.u16(); !ok || v>>8 != 3 {
		return ch, helloErr("bad version")
	}
	if !b.skip(32) {
		return ch, helloErr("short random")
	}
	if sid, ok := b.vec(1); !ok || len(sid) > 32 {
		return ch, helloErr("bad session id")
	}
	if cs, ok := b.vec(2); !ok || len(cs) < 2 || len(cs)%2 != 0 {
		return ch, helloErr("bad cipher suites")
	}
	if cm, ok := b.vec(1); !ok || len(cm) < 1 {
		return ch, helloErr("bad compression methods")
	}
	if len(b) == 0 {
		return ch, nil // no extensions (TLS 1.2 allows that)
	}
	exts, ok := b.vec(2)
	if !ok || len(b) != 0 {
		return ch, helloErr("bad extensions length")
	}
	var seen [2]bool // server_name, alpn
	for len(exts) > 0 {
		typ, ok1 := exts.u16()
		data, ok2 := exts.vec(2)
		if !ok1 || !ok2 {
			return ch, helloErr("bad extension")
		}
		switch typ {
		case extServerName:
			if seen[0] {
				return ch, helloErr("duplicate server_name")
			}
			seen[0] = true
			name, err := parseSNI(data)
			if err != nil {
				return ch, err
			}
			ch.ServerName = name
		case extALPN:
			if seen[1] {
				return ch, helloErr("duplicate alpn")
			}
			seen[1] = true
			protos, err := parseALPN(data)
			if err != nil {
				return ch, err
			}
			ch.ALPN = protos
		}
	}
	return ch, nil
}

func parseSNI(data cursor) (string, error) {
	list, ok := data.vec(2)
	if !ok || len(data) != 0 || len(list) == 0 {
		return "", helloErr("bad server_name list")
	}
	var name string
	for len(list) > 0 {
		typ, ok1 := list.u8()
		v, ok2 := list.vec(2)
		if !ok1 || !ok2 || len(v) == 0 {
			return "", helloErr("bad server_name entry")
		}
		if typ != sniHostName {
			continue // RFC 6066 allows other name types: ignore them
		}
		if name != "" {
			return "", helloErr("two host_names")
		}
		if !validHostName(v) {
			return "", helloErr("bad host_name")
		}
		name = strings.ToLower(string(v))
	}
	return name, nil
}

// validHostName accepts LDH names with dots (and underscores, which appear in
// the wild), without a trailing dot, empty labels or an IP-literal look: the
// same bytes the gateway will route on.
func validHostName(v []byte) bool {
	if len(v) == 0 || len(v) > maxServerNameBytes || v[len(v)-1] == '.' || v[0] == '.' {
		return false
	}
	prev := byte('.')
	for _, c := range v {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		case c == '.':
			if prev == '.' {
				return false
			}
		default:
			return false
		}
		prev = c
	}
	return true
}

func parseALPN(data cursor) ([]string, error) {
	list, ok := data.vec(2)
	if !ok || len(data) != 0 || len(list) == 0 {
		return nil, helloErr("bad alpn list")
	}
	var protos []string
	for len(list) > 0 {
		p, ok := list.vec(1)
		if !ok || len(p) == 0 {
			return nil, helloErr("bad alpn protocol")
		}
		protos = append(protos, string(p))
	}
	return protos, nil
}

func helloErr(msg string) error {
	return &helloError{msg}
}

type helloError struct{ msg string }

func (e *helloError) Error() string { return "tlspeek: ClientHello: " + e.msg }
func (e *helloError) Unwrap() error { return ErrNotHello }

// cursor reads big-endian TLS vectors off the front of a byte slice.
type cursor []byte

func (c *cursor) u8() (byte, bool) {
	if len(*c) < 1 {
		return 0, false
	}
	v := (*c)[0]
	*c = (*c)[1:]
	return v, true
}

func (c *cursor) u16() (uint16, bool) {
	if len(*c) < 2 {
		return 0, false
	}
	v := uint16((*c)[0])<<8 | uint16((*c)[1])
	*c = (*c)[2:]
	return v, true
}

func (c *cursor) skip(n int) bool {
	if len(*c) < n {
		return false
	}
	*c = (*c)[n:]
	return true
}

// vec reads a vector with a lenBytes-byte length prefix.
func (c *cursor) vec(lenBytes int) (cursor, bool) {
	if len(*c) < lenBytes {
		return nil, false
	}
	n := 0
	for _, b := range (*c)[:lenBytes] {
		n = n<<8 | int(b)
	}
	rest := (*c)[lenBytes:]
	if len(rest) < n {
		return nil, false
	}
	*c = rest[n:]
	return rest[:n:n], true
}
