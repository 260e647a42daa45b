package proxyproto

import (
	"net/netip"
	"strconv"
)

// AppendV1 appends the text (v1) encoding of h to b: "PROXY TCP4 src dst
// sport dport\r\n" (TCP6 unless both addresses are IPv4; an IPv4 address is
// then written IPv4-mapped), or "PROXY UNKNOWN\r\n" for a LOCAL header or
// when an address is missing. v1 has no TLVs and no UDP form.
func (h *Header) AppendV1(b []byte) []byte {
	src, dst := h.Source, h.Destination
	if h.Command == Local || !src.IsValid() || !dst.IsValid() {
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
