package proxyproto

import (
	"net"
	"testing"
)

func TestAddrPortOf(t *testing.T) {
	tests := []struct {
		name string
		in   net.Addr
		want string
	}{
		{"tcp4", &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 80}, "192.0.2.1:80"},
		{"mapped", &net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.1"), Port: 80}, "192.0.2.1:80"},
		{"tcp6 zone", &net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 443, Zone: "eth0"}, "[fe80::1]:443"},
		{"udp", &net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 53}, "[2001:db8::1]:53"},
		{"unix", &net.UnixAddr{Name: "/run/x", Net: "unix"}, "invalid AddrPort"},
		{"nil", nil, "invalid AddrPort"},
		{"tcp without IP", &net.TCPAddr{Port: 1}, "invalid AddrPort"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := AddrPortOf(tt.in); got.String() != tt.want {
				t.Errorf("AddrPortOf(%v) = %v, want %s", tt.in, got, tt.want)
			}
		})
	}
}
