//go:build !linux || 386

package l4

import (
	"net"
	"time"
)

// sinceData cannot tell here: the idle timeout is not enforced.
func sinceData(net.Conn) (time.Duration, bool) { return 0, false }
