//go:build linux && !386

package l4

import (
	"net"
	"syscall"
	"time"
	"unsafe"
)

// sinceData returns how long ago c's socket last sent or received data
// (TCP_INFO's tcpi_last_data_sent and tcpi_last_data_recv, in milliseconds),
// and false if c is not a TCP socket that can tell.
func sinceData(c net.Conn) (time.Duration, bool) {
	sc, ok := tcpConn(c).(syscall.Conn)
	if !ok {
		return 0, false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info syscall.TCPInfo
	var errno syscall.Errno
	err = raw.Control(func(fd uintptr) {
		n := uint32(syscall.SizeofTCPInfo)
		_, _, errno = syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.SOL_TCP, syscall.TCP_INFO,
			uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&n)), 0)
	})
	if err != nil || errno != 0 {
		return 0, false
	}
	ms := min(info.Last_data_sent, info.Last_data_recv)
	return time.Duration(ms) * time.Millisecond, true
}
