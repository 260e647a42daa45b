//go:build !linux

package listen

import "syscall"

// freebind does nothing where there is no IP_FREEBIND: an address must be
// assigned before labgate binds it.
func freebind(string, string, syscall.RawConn) error { return nil }
