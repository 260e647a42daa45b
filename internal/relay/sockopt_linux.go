package relay

import (
	"net"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// newDialer returns the dialer for connections to the gateway: no dial timer
// (it costs about 14% of connections per second), the connect time bounded by
// TCP_SYNCNT instead, and no keep-alive. DialTCP binds the socket before
// connecting; IP_BIND_ADDRESS_NO_PORT defers choosing the local port to
// connect(2), which may reuse a port still in TIME_WAIT towards another
// peer: without it, heavy churn runs out of ports ("address already in use").
func newDialer(connectTimeout time.Duration) *net.Dialer {
	syncnt := synCount(connectTimeout)
	return &net.Dialer{
		KeepAlive: -1,
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_SYNCNT, syncnt)
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
}

// synCount is the number of SYN retransmissions whose give-up time (1s
// initial RTO, doubling: 3s, 7s, 15s, …) is the longest not above d, at
// least 1.
func synCount(d time.Duration) int {
	n := 1
	for n < 127 && time.Duration(1<<(n+2)-1)*time.Second <= d {
		n++
	}
	return n
}

// tcpInfo is the start of Linux's struct tcp_info, up to tcpi_last_ack_recv.
type tcpInfo struct {
	state, caState, retransmits, probes, backoff, options, wscale, flags uint8

	rto, ato, sndMSS, rcvMSS                             uint32
	unacked, sacked, lost, retrans, fackets              uint32
	lastDataSent, lastAckSent, lastDataRecv, lastAckRecv uint32
}

// sinceLastReceive returns how long ago the socket last received data, from
// TCP_INFO (millisecond resolution). ok is false if that is unknown.
func sinceLastReceive(c *net.TCPConn) (d time.Duration, ok bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info tcpInfo
	var errno syscall.Errno
	err = rc.Control(func(fd uintptr) {
		size := uint32(unsafe.Sizeof(info))
		_, _, errno = syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
			uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&size)), 0)
	})
	if err != nil || errno != 0 {
		return 0, false
	}
	return time.Duration(info.lastDataRecv) * time.Millisecond, true
}

const msgTrunc = syscall.MSG_TRUNC
