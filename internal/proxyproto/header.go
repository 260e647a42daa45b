// Package proxyproto reads and writes the PROXY protocol, versions 1 (text)
// and 2 (binary), as specified in HAProxy's doc/proxy-protocol.txt.
//
// A relay in front of labgate (HAProxy send-proxy-v2, nginx proxy_protocol,
// a cloud load balancer, curl --haproxy-protocol) prepends one header to each
// connection, or to each UDP datagram, telling the receiver the original
// client and destination addresses. A receiver must be configured to expect
// the header and must never guess whether it is there: Read and Conn fail when
// it is missing, and callers should accept it only from trusted sources.
//
// Parsing is strict. Anything the specification does not allow is an error
// wrapping ErrInvalid, and input that does not start with a PROXY signature at
// all is an error wrapping ErrNoHeader, so callers can tell a client that
// speaks directly to them from a relay that sent garbage.
//
// Choices where the specification leaves room:
//   - v2 AF_UNIX addresses (families 0x31, 0x32) are accepted and treated
//     like AF_UNSPEC: Transport is Unspec and the addresses are zero, so the
//     real connection endpoints are used. TLVs after them are still parsed.
//   - A LOCAL v2 header keeps zero addresses whatever its family; its TLVs
//     are parsed when the family byte is a valid one and ignored otherwise.
//   - "PROXY UNKNOWN" (v1) is reported as Command Proxy with Transport Unspec
//     and zero addresses, like a v2 PROXY header with family AF_UNSPEC.
//   - TLVs with an empty value count as absent. Unknown TLV types (including
//     NOOP, SSL and NETNS) are skipped; ALPN, AUTHORITY, CRC32C and UNIQUE_ID
//     may appear at most once each.
//   - A v2 header is at most 4096 bytes long, signature included.
package proxyproto

import (
	"errors"
	"net/netip"
	"strconv"
	"unicode/utf8"
)

// ErrNoHeader is wrapped by errors for input that does not start with a PROXY
// protocol signature: the peer sent no header at all (or closed the
// connection before sending a byte).
var ErrNoHeader = errors.New("proxyproto: no PROXY protocol header")

// ErrInvalid is wrapped by errors for input that starts like a PROXY protocol
// header but is malformed, truncated or violates the specification.
var ErrInvalid = errors.New("proxyproto: invalid PROXY protocol header")

// Command is the v2 command: Local (health checks and connections the relay
// makes on its own behalf) or Proxy (a relayed connection). Its values are
// the ones on the wire.
type Command uint8

const (
	// Local means the connection was made by the relay itself; the real
	// connection endpoints apply.
	Local Command = 0x0
	// Proxy means the connection was relayed for the client in Source.
	Proxy Command = 0x1
)

func (c Command) String() string {
	switch c {
	case Local:
		return "LOCAL"
	case Proxy:
		return "PROXY"
	}
	return "Command(" + strconv.Itoa(int(c)) + ")"
}

// Transport is the relayed transport protocol. Its values are the ones in the
// low nibble of the v2 family byte.
type Transport uint8

const (
	// Unspec is an unknown or unspecified transport; the addresses are zero.
	Unspec Transport = 0x0
	// TCP is a stream (SOCK_STREAM) transport.
	TCP Transport = 0x1
	// UDP is a datagram (SOCK_DGRAM) transport.
	UDP Transport = 0x2
)

func (t Transport) String() string {
	switch t {
	case Unspec:
		return "UNSPEC"
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	}
	return "Transport(" + strconv.Itoa(int(t)) + ")"
}

// Header is one parsed PROXY protocol header.
type Header struct {
	// Version is 1 or 2, as received. AppendV2 ignores it.
	Version int
	// Command is Local or Proxy. Version 1 headers are always Proxy.
	Command Command
	// Transport is Unspec, TCP or UDP.
	Transport Transport
	// Source and Destination are the original client and the address it
	// connected to. Both are zero for Local, Unspec and UNKNOWN headers.
	Source, Destination netip.AddrPort
	// Authority is the PP2_TYPE_AUTHORITY TLV (0x02): the host name the
	// client asked for, usually the TLS SNI. Empty if absent.
	Authority string
	// ALPN is the PP2_TYPE_ALPN TLV (0x01): the negotiated application
	// protocol, e.g. "h2". Nil if absent.
	ALPN []byte
	// UniqueID is the PP2_TYPE_UNIQUE_ID TLV (0x05), at most 128 bytes. Nil
	// if absent.
	UniqueID []byte
}

// Wire constants from the specification.
const (
	v2HeaderLen   = 16   // signature, ver/cmd, family, length
	v2MaxLen      = 4096 // our cap on a whole v2 header
	v1MaxLen      = 107  // longest v1 line, CRLF included
	maxUniqueID   = 128
	tlvALPN       = 0x01
	tlvAuthority  = 0x02
	tlvCRC32C     = 0x03
	tlvUniqueID   = 0x05
	addrLenInet   = 12
	addrLenInet6  = 36
	addrLenUnix   = 216
	famUnspec     = 0x00
	famTCP4       = 0x11
	famUDP4       = 0x12
	famTCP6       = 0x21
	famUDP6       = 0x22
	famUnixStream = 0x31
	famUnixDgram  = 0x32
)

// sigV2 is the 12-byte v2 signature.
const sigV2 = "\r\n\r\n\x00\r\nQUIT\n"

// sigV1 is the v1 line prefix.
const sigV1 = "PROXY "

// AppendV2 appends the binary v2 encoding of h to b and returns the extended
// slice.
//
// A Local header is encoded without addresses. A Proxy header carries its
// addresses when Transport is TCP or UDP and both Source and Destination are
// valid; otherwise it is encoded with family AF_UNSPEC and no addresses. If
// both addresses are IPv4 the family is AF_INET, else AF_INET6 (an IPv4
// address is then written IPv4-mapped). Zones are dropped.
//
// The ALPN, Authority and UniqueID TLVs are appended when non-empty and
// valid: an Authority that is not UTF-8, a UniqueID over 128 bytes or a value
// that would push the header past 4096 bytes is left out, so that whatever
// AppendV2 writes, Read accepts. No CRC32C TLV is written.
func (h *Header) AppendV2(b []byte) []byte {
	start := len(b)
	b = append(b, sigV2...)
	verCmd := byte(0x21)
	if h.Command == Local {
		verCmd = 0x20
	}
	fam := byte(famUnspec)
	src, dst := h.Source, h.Destination
	if h.Command == Proxy && (h.Transport == TCP || h.Transport == UDP) && src.IsValid() && dst.IsValid() {
		if src.Addr().Is4() && dst.Addr().Is4() {
			fam = 0x10 | byte(h.Transport)
		} else {
			fam = 0x20 | byte(h.Transport)
		}
	}
	b = append(b, verCmd, fam, 0, 0)
	switch fam >> 4 {
	case 1:
		s, d := src.Addr().As4(), dst.Addr().As4()
		b = append(b, s[:]...)
		b = append(b, d[:]...)
		b = appendPorts(b, src.Port(), dst.Port())
	case 2:
		s, d := src.Addr().As16(), dst.Addr().As16()
		b = append(b, s[:]...)
		b = append(b, d[:]...)
		b = appendPorts(b, src.Port(), dst.Port())
	}
	fits := func(n int) bool { return len(b)-start+3+n <= v2MaxLen }
	if n := len(h.ALPN); n > 0 && fits(n) {
		b = appendTLV(b, tlvALPN, h.ALPN)
	}
	if n := len(h.Authority); n > 0 && fits(n) && utf8.ValidString(h.Authority) {
		b = append(b, tlvAuthority, byte(n>>8), byte(n))
		b = append(b, h.Authority...)
	}
	if n := len(h.UniqueID); n > 0 && n <= maxUniqueID && fits(n) {
		b = appendTLV(b, tlvUniqueID, h.UniqueID)
	}
	n := len(b) - start - v2HeaderLen
	b[start+14], b[start+15] = byte(n>>8), byte(n)
	return b
}

func appendPorts(b []byte, src, dst uint16) []byte {
	return append(b, byte(src>>8), byte(src), byte(dst>>8), byte(dst))
}

func appendTLV(b []byte, typ byte, v []byte) []byte {
	b = append(b, typ, byte(len(v)>>8), byte(len(v)))
	return append(b, v...)
}
