package l4

import (
	"net"
	"net/netip"
	"strconv"

	"github.com/labgate/labgate/internal/proxyproto"
)

// proxyHeader returns the PROXY header of the given version ("v1" or "v2")
// telling the backend that client connected to local. A LOCAL command (the
// relay's own probe) stays LOCAL in v2 and becomes "PROXY UNKNOWN" in v1,
// as do addresses that are not IP.
func proxyHeader(version string, cmd proxyproto.Command, client, local net.Addr) []byte {
	src, dst := addrPort(client), addrPort(local)
	if version == "v1" {
		if cmd == proxyproto.Local {
			src = netip.AddrPort{}
		}
		return appendV1(make([]byte, 0, 108), src, dst)
	}
	h := proxyproto.Header{Command: cmd, Transport: proxyproto.TCP, Source: src, Destination: dst}
	return h.AppendV2(make([]byte, 0, 52))
}

// appendV1 appends "PROXY TCP4 src dst sport dport\r\n" (TCP6 unless both
// addresses are IPv4; an IPv4 address is then written IPv4-mapped), or
// "PROXY UNKNOWN\r\n" when an address is missing.
func appendV1(b []byte, src, dst netip.AddrPort) []byte {
	if !src.IsValid() || !dst.IsValid() {
		return append(b, "PROXY UNKNOWN\r\n"...)
	}
	s, d := src.Addr(), dst.Addr()
	if s.Is4() && d.Is4() {
		b = append(b, "PROXY TCP4 "...)
	} else {
		b = append(b, "PROXY TCP6 "...)
		s, d = netip.AddrFrom16(s.As16()), netip.AddrFrom16(d.As16())
	}
	b = s.AppendTo(b)
	b = append(b, ' ')
	b = d.AppendTo(b)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(src.Port()), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(dst.Port()), 10)
	return append(b, '\r', '\n')
}

// addrPort returns a's address (unmapped, without zone) and port; zero if a
// is not a TCP or UDP address.
func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	default:
		return ap
	}
	if !ap.Addr().IsValid() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}
