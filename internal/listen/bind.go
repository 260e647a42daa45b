package listen

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
)

// Config is the net.ListenConfig every labgate socket is bound with. On
// Linux it sets IP_FREEBIND: an address this machine does not have yet — the
// VPN address of a tailnet or WireGuard interface that comes up after labgate
// at boot — is bound anyway, and connections arrive from the moment the
// address is assigned, instead of labgate failing to start. A socket bound
// this way should be followed by WarnAbsent.
func Config() net.ListenConfig {
	return net.ListenConfig{Control: freebind}
}

// TCP binds a TCP listener on addr with Config, and WarnAbsent.
func TCP(addr string, log *slog.Logger) (net.Listener, error) {
	lc := Config()
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err == nil {
		WarnAbsent(log, "tcp", addr)
	}
	return ln, err
}

// UDP binds a UDP socket on addr with Config, and WarnAbsent.
func UDP(addr string, log *slog.Logger) (*net.UDPConn, error) {
	lc := Config()
	pc, err := lc.ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		return nil, err
	}
	WarnAbsent(log, "udp", addr)
	return pc.(*net.UDPConn), nil
}

// WarnAbsent logs, when addr is Absent, that the socket bound there waits
// for its address: right at boot before the VPN is up, or a typo.
func WarnAbsent(log *slog.Logger, network, addr string) {
	if log != nil && Absent(addr) {
		log.Warn("listening on an address this machine does not have (yet): nothing arrives until it is assigned; a VPN still coming up, or a typo in the file",
			"addr", addr, "network", network)
	}
}

// Absent reports whether addr (host:port) names an IP address that no
// interface of this machine has right now: a socket bound there with Config
// receives nothing until the address appears. Wildcard addresses, host names
// and addresses that cannot be checked are not absent.
func Absent(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.IsUnspecified() || ip.IsLoopback() {
		return false
	}
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	ip = ip.Unmap().WithZone("")
	for _, a := range ifaddrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Unmap() == ip {
			return false
		}
	}
	return true
}
