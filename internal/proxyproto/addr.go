package proxyproto

import (
	"net"
	"net/netip"
)

// AddrPortOf returns a TCP or UDP address as an AddrPort, with IPv4-mapped
// IPv6 addresses unmapped (so a dual-stack listener describes an IPv4 client
// as TCP4) and without a zone. It is the zero AddrPort for other addresses.
func AddrPortOf(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	default:
		return netip.AddrPort{}
	}
	if !ap.Addr().IsValid() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}
