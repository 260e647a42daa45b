package proxyproto

import (
	"bufio"
	"bytes"
	"net/netip"
	"testing"
)

func TestAppendV1(t *testing.T) {
	v4a, v4b := netip.MustParseAddrPort("203.0.113.9:40000"), netip.MustParseAddrPort("100.64.0.1:443")
	v6 := netip.MustParseAddrPort("[2001:db8::1]:25")
	tests := []struct {
		name string
		h    Header
		want string
		src  netip.AddrPort // what Read gives back
	}{
		{"tcp4", Header{Command: Proxy, Source: v4a, Destination: v4b}, "PROXY TCP4 203.0.113.9 100.64.0.1 40000 443\r\n", v4a},
		{"tcp6", Header{Command: Proxy, Source: v6, Destination: v6}, "PROXY TCP6 2001:db8::1 2001:db8::1 25 25\r\n", v6},
		{"mixed families become TCP6", Header{Command: Proxy, Source: v4a, Destination: v6},
			"PROXY TCP6 ::ffff:203.0.113.9 2001:db8::1 40000 25\r\n", netip.AddrPortFrom(netip.AddrFrom16(v4a.Addr().As16()), 40000)},
		{"local", Header{Command: Local, Source: v4a, Destination: v4b}, "PROXY UNKNOWN\r\n", netip.AddrPort{}},
		{"no addresses", Header{Command: Proxy}, "PROXY UNKNOWN\r\n", netip.AddrPort{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.h.AppendV1(nil)
			if string(b) != tt.want {
				t.Fatalf("AppendV1 = %q, want %q", b, tt.want)
			}
			got, err := Read(bufio.NewReader(bytes.NewReader(b)))
			if err != nil {
				t.Fatalf("Read of our own v1 header: %v", err)
			}
			if got.Version != 1 || got.Source != tt.src {
				t.Errorf("Read back version %d source %v, want 1 %v", got.Version, got.Source, tt.src)
			}
		})
	}
}
