package listen

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// freebind sets IP_FREEBIND (and IPV6_FREEBIND) on a socket before bind.
func freebind(network, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		switch network {
		case "tcp6", "udp6":
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_FREEBIND, 1)
		default:
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_FREEBIND, 1)
		}
	})
	if err != nil {
		return err
	}
	if serr == unix.ENOPROTOOPT {
		return nil // IPV6_FREEBIND needs Linux 4.15: bind as usual
	}
	return serr
}
