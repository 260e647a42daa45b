package proxyproto

import "syscall"

var errConnReset = syscall.ECONNRESET
