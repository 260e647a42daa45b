package testpeer

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BIND is a running BIND 9 (named) serving one primary zone on loopback that
// takes dynamic updates (RFC 2136) and allows zone transfers, both only with
// its TSIG key.
type BIND struct {
	Addr      string // 127.0.0.1:port, UDP and TCP
	Zone      string // without trailing dot
	KeyName   string
	Algorithm string // hmac-sha256
	Secret    string // base64
	Process   *Process
}

// StartBIND starts named for zone with the given extra zone-file lines
// (relative names are below the zone), and stops it at cleanup. The zone
// starts with its SOA, one NS and the NS's address.
func StartBIND(t testing.TB, zone string, records ...string) *BIND {
	t.Helper()
	named := Need(t, "named")
	dir := t.TempDir()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	b := &BIND{Zone: zone, KeyName: "labgate-test", Algorithm: "hmac-sha256", Secret: base64.StdEncoding.EncodeToString(key)}
	zoneFile := fmt.Sprintf("$ORIGIN %s.\n$TTL 300\n@ IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 300\n@ IN NS ns.%s.\nns IN A 127.0.0.1\n%s\n",
		zone, zone, zone, zone, strings.Join(records, "\n"))
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("zone.db", zoneFile)
	{
		port := FreePort(t, "127.0.0.1")
		b.Addr = net.JoinHostPort("127.0.0.1", port)
		write("named.conf", fmt.Sprintf(`key %q { algorithm %s; secret %q; };
options {
	directory %q;
	pid-file %q;
	session-keyfile %q;
	managed-keys-directory %q;
	listen-on port %s { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	notify no;
};
controls { };
zone %q {
	type primary;
	file "zone.db";
	allow-update { key %q; };
	allow-transfer { key %q; };
};
`, b.KeyName, b.Algorithm, b.Secret, dir, filepath.Join(dir, "named.pid"), filepath.Join(dir, "session.key"), dir, port, zone, b.KeyName, b.KeyName))
		// -g: foreground, logs on stderr; -u root is accepted when running as root.
		args := []string{"-g", "-c", filepath.Join(dir, "named.conf")}
		if os.Geteuid() == 0 {
			args = append(args, "-u", "root")
		}
		b.Process = Start(t, named, args...)
	}
	WaitPort(t, b.Addr)
	// named listens before it has loaded the zone; it logs "running" on a line
	// of its own after (and "running on Linux" in its banner).
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.Process.Output(), " running\n") {
		if time.Now().After(deadline) {
			t.Fatalf("named did not load the zone %s:\n%s", zone, b.Process.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return b
}
