package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/netip"
	"strings"
	"unicode/utf8"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// peeker is what the parser needs from its input: a *bufio.Reader large
// enough for any header, or a hdrReader.
type peeker interface {
	Peek(n int) ([]byte, error)
	Discard(n int) (int, error)
	Buffered() int
}

// Read reads exactly one PROXY protocol header, version 1 or 2 (told apart by
// the first byte), from br and consumes nothing after it.
//
// If the input does not start with a PROXY signature, the error wraps
// ErrNoHeader; with a reader of at least 4096 bytes nothing is consumed in
// that case. A malformed or truncated header gives an error wrapping
// ErrInvalid. I/O errors (a deadline, io.EOF) are wrapped too, so errors.Is
// finds them: io.EOF before the first byte wraps ErrNoHeader, a truncated
// header wraps ErrInvalid and io.ErrUnexpectedEOF.
//
// Read waits only for bytes it needs: a v1 line is scanned as it arrives, so
// a peer that sends the header and then waits for the server to speak first
// is served at once.
func Read(br *bufio.Reader) (*Header, error) {
	if br.Size() < v2MaxLen {
		// Too small to peek a whole header: copy it out with exact reads.
		return readHeader(&hdrReader{src: br})
	}
	return readHeader(br)
}

func readHeader(p peeker) (*Header, error) {
	b, err := p.Peek(1)
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: %w", ErrNoHeader, err)
	}
	switch b[0] {
	case sigV1[0]:
		return readV1(p)
	case sigV2[0]:
		return readV2(p)
	}
	return nil, ErrNoHeader
}

// expect peeks until sig is buffered, failing with ErrNoHeader as soon as the
// bytes seen so far differ from it.
func expect(p peeker, sig string) error {
	for n := 1; ; {
		b, err := p.Peek(n)
		if string(b) != sig[:len(b)] {
			return ErrNoHeader
		}
		if err != nil {
			return truncated(err)
		}
		if n == len(sig) {
			return nil
		}
		n = max(n+1, min(p.Buffered(), len(sig)))
	}
}

func readV2(p peeker) (*Header, error) {
	if err := expect(p, sigV2); err != nil {
		return nil, err
	}
	b, err := p.Peek(v2HeaderLen)
	if err != nil {
		return nil, truncated(err)
	}
	if err := checkVerCmd(b[12]); err != nil {
		return nil, err
	}
	n := v2HeaderLen + int(binary.BigEndian.Uint16(b[14:]))
	if n > v2MaxLen {
		return nil, invalidf("header length %d over the %d-byte cap", n, v2MaxLen)
	}
	if b, err = p.Peek(n); err != nil {
		return nil, truncated(err)
	}
	h, err := parseV2(b)
	if err != nil {
		return nil, err
	}
	_, _ = p.Discard(n)
	return h, nil
}

func readV1(p peeker) (*Header, error) {
	if err := expect(p, sigV1); err != nil {
		return nil, err
	}
	scanned := len(sigV1)
	for {
		b, err := p.Peek(min(max(p.Buffered(), scanned+1), v1MaxLen))
		if i := bytes.IndexByte(b[scanned:], '\n'); i >= 0 {
			line := b[:scanned+i+1]
			h, err := parseV1(line)
			if err != nil {
				return nil, err
			}
			_, _ = p.Discard(len(line))
			return h, nil
		}
		if err != nil {
			return nil, truncated(err)
		}
		if len(b) >= v1MaxLen {
			return nil, invalidf("v1 line longer than %d bytes", v1MaxLen)
		}
		scanned = len(b)
	}
}

// parseV1 parses one complete v1 line, "PROXY " to "\r\n" included.
func parseV1(line []byte) (*Header, error) {
	if len(line) < len(sigV1)+2 || line[len(line)-2] != '\r' {
		return nil, invalidf("v1 line does not end in CRLF")
	}
	s := string(line[len(sigV1) : len(line)-2])
	proto, rest, _ := strings.Cut(s, " ")
	switch proto {
	case "UNKNOWN":
		// The spec says to ignore whatever follows UNKNOWN.
		return &Header{Version: 1, Command: Proxy}, nil
	case "TCP4", "TCP6":
	default:
		return nil, invalidf("v1 protocol %q", proto)
	}
	srcS, rest, ok1 := strings.Cut(rest, " ")
	dstS, rest, ok2 := strings.Cut(rest, " ")
	spS, dpS, ok3 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || !ok3 {
		return nil, invalidf("v1 line has too few fields")
	}
	v4 := proto == "TCP4"
	src, err1 := parseV1Addr(srcS, v4)
	dst, err2 := parseV1Addr(dstS, v4)
	sp, err3 := parsePort(spS)
	dp, err4 := parsePort(dpS)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return nil, fmt.Errorf("%w: v1 %s line: %w", ErrInvalid, proto, err)
	}
	return &Header{
		Version:     1,
		Command:     Proxy,
		Transport:   TCP,
		Source:      netip.AddrPortFrom(src, sp),
		Destination: netip.AddrPortFrom(dst, dp),
	}, nil
}

func parseV1Addr(s string, v4 bool) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return a, fmt.Errorf("address %q", s)
	case a.Zone() != "":
		return a, fmt.Errorf("address %q has a zone", s)
	case v4 && !a.Is4(), !v4 && !a.Is6():
		return a, fmt.Errorf("address %q of the wrong family", s)
	}
	return a, nil
}

// parsePort accepts 0 to 65535 in decimal without sign or leading zeros.
func parsePort(s string) (uint16, error) {
	if len(s) == 0 || len(s) > 5 || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("port %q", s)
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("port %q", s)
		}
		n = n*10 + int(c-'0')
	}
	if n > 0xffff {
		return 0, fmt.Errorf("port %q", s)
	}
	return uint16(n), nil
}

// ParseV2Datagram parses the v2 header at the start of a UDP datagram and
// returns it with the payload after it (a subslice of p). The header does
// not alias p. Version 1 is not allowed in datagrams.
func ParseV2Datagram(p []byte) (*Header, []byte, error) {
	if len(p) < len(sigV2) || string(p[:len(sigV2)]) != sigV2 {
		if len(p) == 0 || string(p) != sigV2[:min(len(p), len(sigV2))] {
			return nil, nil, ErrNoHeader
		}
	}
	if len(p) < v2HeaderLen {
		return nil, nil, truncated(io.EOF)
	}
	if err := checkVerCmd(p[12]); err != nil {
		return nil, nil, err
	}
	n := v2HeaderLen + int(binary.BigEndian.Uint16(p[14:]))
	if n > v2MaxLen {
		return nil, nil, invalidf("header length %d over the %d-byte cap", n, v2MaxLen)
	}
	if n > len(p) {
		return nil, nil, invalidf("header length %d past the end of a %d-byte datagram", n, len(p))
	}
	h, err := parseV2(p[:n])
	if err != nil {
		return nil, nil, err
	}
	return h, p[n:], nil
}

func checkVerCmd(b byte) error {
	if b>>4 != 2 {
		return invalidf("v2 version %d", b>>4)
	}
	if c := Command(b & 0x0f); c != Local && c != Proxy {
		return invalidf("v2 command %d", c)
	}
	return nil
}

// parseV2 parses one complete v2 header, signature included; checkVerCmd
// has passed.
func parseV2(b []byte) (*Header, error) {
	if err := checkVerCmd(b[12]); err != nil {
		return nil, err
	}
	h := &Header{Version: 2, Command: Command(b[12] & 0x0f)}
	fam := b[13]
	body := b[v2HeaderLen:]
	var addrLen int
	switch fam {
	case famUnspec:
	case famTCP4, famUDP4:
		addrLen = addrLenInet
	case famTCP6, famUDP6:
		addrLen = addrLenInet6
	case famUnixStream, famUnixDgram:
		addrLen = addrLenUnix
	default:
		if h.Command == Local {
			// The receiver must discard the protocol block, family included.
			return h, nil
		}
		return nil, invalidf("v2 address family and transport 0x%02x", fam)
	}
	if len(body) < addrLen {
		return nil, invalidf("v2 length %d too short for family 0x%02x", len(body), fam)
	}
	if h.Command == Proxy {
		switch fam >> 4 {
		case 1:
			h.Transport = Transport(fam & 0x0f)
			h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:]))
			h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[4:8])), binary.BigEndian.Uint16(body[10:]))
		case 2:
			h.Transport = Transport(fam & 0x0f)
			h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])), binary.BigEndian.Uint16(body[32:]))
			h.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[16:32])), binary.BigEndian.Uint16(body[34:]))
		}
	}
	if err := h.parseTLVs(b, v2HeaderLen+addrLen); err != nil {
		return nil, err
	}
	return h, nil
}

// parseTLVs parses the TLVs in b[off:], where b is the whole header, and
// verifies the CRC32C TLV if there is one.
func (h *Header) parseTLVs(b []byte, off int) error {
	var alpn, auth, uid []byte
	var seen uint64
	crcAt := -1
	for off < len(b) {
		if len(b)-off < 3 {
			return invalidf("truncated TLV at offset %d", off)
		}
		typ := b[off]
		n := int(b[off+1])<<8 | int(b[off+2])
		v0 := off + 3
		if len(b)-v0 < n {
			return invalidf("TLV 0x%02x of length %d runs past the header", typ, n)
		}
		v := b[v0 : v0+n]
		if typ < 64 {
			if seen&(1<<typ) != 0 && (typ == tlvALPN || typ == tlvAuthority || typ == tlvCRC32C || typ == tlvUniqueID) {
				return invalidf("duplicate TLV 0x%02x", typ)
			}
			seen |= 1 << typ
		}
		switch typ {
		case tlvALPN:
			alpn = v
		case tlvAuthority:
			if !utf8.Valid(v) {
				return invalidf("AUTHORITY TLV is not UTF-8")
			}
			auth = v
		case tlvCRC32C:
			if n != 4 {
				return invalidf("CRC32C TLV of length %d", n)
			}
			crcAt = v0
		case tlvUniqueID:
			if n > maxUniqueID {
				return invalidf("UNIQUE_ID TLV of length %d over %d", n, maxUniqueID)
			}
			uid = v
		}
		off = v0 + n
	}
	if crcAt >= 0 {
		var zero [4]byte
		c := crc32.Update(0, castagnoli, b[:crcAt])
		c = crc32.Update(c, castagnoli, zero[:])
		c = crc32.Update(c, castagnoli, b[crcAt+4:])
		if want := binary.BigEndian.Uint32(b[crcAt:]); c != want {
			return invalidf("CRC32C mismatch: header says %08x, computed %08x", want, c)
		}
	}
	if len(auth) > 0 {
		h.Authority = string(auth)
	}
	if la, lu := len(alpn), len(uid); la+lu > 0 {
		slab := make([]byte, la+lu)
		copy(slab, alpn)
		copy(slab[la:], uid)
		if la > 0 {
			h.ALPN = slab[:la:la]
		}
		if lu > 0 {
			h.UniqueID = slab[la:]
		}
	}
	return nil
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// truncated wraps an I/O error that cut a header short.
func truncated(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w: truncated: %w", ErrInvalid, err)
}

// hdrReader is a peeker over an io.Reader that never reads more than the
// caller peeks plus ahead bytes. With ahead 0 it reads exactly the header.
type hdrReader struct {
	src    io.Reader
	buf    []byte
	r, w   int
	ahead  int
	err    error
	inline [128]byte
}

func (h *hdrReader) Buffered() int { return h.w - h.r }

func (h *hdrReader) Peek(n int) ([]byte, error) {
	if h.buf == nil {
		h.buf = h.inline[:]
	}
	end := max(h.r+n, min(h.ahead, len(h.buf)))
	if end > len(h.buf) {
		nb := make([]byte, max(end, 2*len(h.buf)))
		copy(nb, h.buf[:h.w])
		h.buf = nb
	}
	for h.w < h.r+n && h.err == nil {
		m, err := h.src.Read(h.buf[h.w:end])
		h.w += m
		if err != nil {
			h.err = err
		} else if m == 0 {
			h.err = io.ErrNoProgress
		}
	}
	if h.w < h.r+n {
		return h.buf[h.r:h.w], h.err
	}
	return h.buf[h.r : h.r+n], nil
}

func (h *hdrReader) Discard(n int) (int, error) {
	h.r += n
	return n, nil
}

var _ peeker = (*bufio.Reader)(nil)
