package listen

import (
	"bytes"
	"log/slog"
	"runtime"
	"strings"
	"testing"
)

// absentIP is in TEST-NET-1 (RFC 5737), on no interface of a test machine.
const absentIP = "192.0.2.77"

func TestAbsent(t *testing.T) {
	for addr, want := range map[string]bool{
		absentIP + ":443":   true,
		"[2001:db8::7]:443": true,
		"127.0.0.1:443":     false,
		"127.0.0.9:443":     false, // all of 127/8 is local
		"0.0.0.0:443":       false,
		"[::]:443":          false,
		":443":              false,
		"vault.lab:443":     false, // a name: cannot tell
		"not an address":    false,
	} {
		if got := Absent(addr); got != want {
			t.Errorf("Absent(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestBindAbsentAddress binds TCP and UDP on an address the machine does not
// have, as at boot before the VPN is up: it works on Linux (IP_FREEBIND), and
// the log says why nothing will arrive yet.
func TestBindAbsentAddress(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("IP_FREEBIND is Linux only")
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ln, err := TCP(absentIP+":0", log)
	if err != nil {
		t.Fatalf("binding TCP on an absent address: %v", err)
	}
	defer ln.Close()
	pc, err := UDP(absentIP+":0", log)
	if err != nil {
		t.Fatalf("binding UDP on an absent address: %v", err)
	}
	defer pc.Close()
	if n := strings.Count(logs.String(), "does not have (yet)"); n != 2 {
		t.Errorf("%d warnings, want one per socket:\n%s", n, logs.String())
	}

	logs.Reset()
	ln2, err := TCP("127.0.0.1:0", log)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	if logs.Len() != 0 {
		t.Errorf("a warning for an address the machine has:\n%s", logs.String())
	}
}
