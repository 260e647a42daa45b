package l4

import (
	"net"

	"github.com/labgate/labgate/internal/proxyproto"
)

// proxyHeader returns the PROXY header of the given version ("v1" or "v2")
// telling the backend that client connected to local. A LOCAL command (the
// relay's own probe) stays LOCAL in v2 and becomes "PROXY UNKNOWN" in v1,
// as do addresses that are not IP.
func proxyHeader(version string, cmd proxyproto.Command, client, local net.Addr) []byte {
	h := proxyproto.Header{Command: cmd, Transport: proxyproto.TCP,
		Source: proxyproto.AddrPortOf(client), Destination: proxyproto.AddrPortOf(local)}
	if version == "v1" {
		return h.AppendV1(make([]byte, 0, 108))
	}
	return h.AppendV2(make([]byte, 0, 52))
}
