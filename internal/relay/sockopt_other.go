//go:build !linux

package relay

import (
	"net"
	"time"
)

// newDialer bounds the connect time with a dial timer where TCP_SYNCNT is
// not available.
func newDialer(connectTimeout time.Duration) *net.Dialer {
	return &net.Dialer{KeepAlive: -1, Timeout: connectTimeout}
}

// sinceLastReceive is unknown outside Linux: idle connections are not closed
// there.
func sinceLastReceive(*net.TCPConn) (time.Duration, bool) { return 0, false }

const msgTrunc = 0x20 // MSG_TRUNC on Linux and the BSDs
