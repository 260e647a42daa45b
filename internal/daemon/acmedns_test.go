package daemon

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/labgate/labgate/internal/certs"
	"github.com/labgate/labgate/internal/testacme"
	"github.com/labgate/labgate/internal/testpeer"
)

// newBINDLab is `labgate serve` with tls.acme on a pebble of its own that
// resolves and validates DNS-01 against a real BIND holding lab.test, and
// dns.provider rfc2136 (TSIG, AXFR) on that BIND: records and DNS-01 TXT
// values are both written by labgate's provider. BIND starts with a
// hand-made record, blog.lab.test A 192.0.2.1.
func newBINDLab(t testing.TB, dir string, hosts ...string) *acmeLab {
	t.Helper()
	b := testpeer.StartBIND(t, "lab.test", `blog IN A 192.0.2.1`)
	p := testacme.Start(t, testacme.Options{DNSServer: b.Addr})
	l := &acmeLab{t: t, p: p, mode: bindDNS, dir: dir, file: filepath.Join(dir, "lab.yaml"), bind: b,
		https: fmt.Sprintf("127.0.0.1:%d", p.TLSPort), http: fmt.Sprintf("127.0.0.1:%d", p.HTTPPort),
		roots: p.Roots(t), logs: &testpeer.Buffer{}, events: make(chan certs.Event, 100)}
	l.write(hosts...)
	return l
}

// TestACMEDNS01ThroughBIND is the whole path of issue 4 on real servers:
// the reconciler writes the service records (with their ExternalDNS owner
// records) into BIND; the private wildcard and a public service's
// certificate are obtained from pebble through DNS-01, whose TXT values
// the same rfc2136 provider writes into BIND and removes afterwards; the
// gateway serves them, verified against pebble's root; a restart serves
// them from state_dir without a request to the CA.
func TestACMEDNS01ThroughBIND(t *testing.T) {
	dir := t.TempDir()
	l := newBINDLab(t, dir, "vault", "git", "pub:www")
	b := l.bind
	l.start()

	waitFor(t, "the service records in BIND", func() bool {
		return slices.Equal(lookup(b.Addr, "www.lab.test", dns.TypeCNAME), []string{"relay.lab.test."}) &&
			slices.Equal(lookup(b.Addr, "vault.lab.test", dns.TypeCNAME), []string{"private-relay.lab.test."}) &&
			slices.Equal(lookup(b.Addr, "git.lab.test", dns.TypeCNAME), []string{"private-relay.lab.test."}) &&
			slices.Equal(lookup(b.Addr, "relay.lab.test", dns.TypeA), []string{"203.0.113.7"})
	})
	owner := []string{`"heritage=external-dns,external-dns/owner=labtest"`}
	for _, n := range []string{"cname-www.lab.test", "cname-vault.lab.test", "cname-git.lab.test", "a-relay.lab.test"} {
		if got := lookup(b.Addr, n, dns.TypeTXT); !slices.Equal(got, owner) {
			t.Errorf("owner record %s TXT = %v, want %v", n, got, owner)
		}
	}

	for _, h := range []string{"vault", "git"} {
		if got := l.served(h).DNSNames; !slices.Equal(got, []string{"*.lab.test"}) {
			t.Errorf("%s: certificate names %v, want the wildcard", h, got)
		}
	}
	var www []string
	deadline := time.Now().Add(60 * time.Second)
	for !slices.Equal(www, []string{"www.lab.test"}) && time.Now().Before(deadline) {
		www = l.served("www").DNSNames // the wildcard until its own arrives
		time.Sleep(50 * time.Millisecond)
	}
	if !slices.Equal(www, []string{"www.lab.test"}) {
		t.Fatalf("www: certificate names %v, want its own", www)
	}
	if got := len(l.p.Orders()); got != 2 {
		t.Errorf("%d orders, want 2 (the wildcard and www)", got)
	}

	// The challenges went through BIND: labgate's provider added the
	// TXT values there (pebble has no other DNS server) and removed them.
	bindLog := b.Process.Output()
	for _, n := range []string{"_acme-challenge.lab.test", "_acme-challenge.www.lab.test"} {
		if !strings.Contains(bindLog, "adding an RR at '"+n+"' TXT") {
			t.Errorf("BIND logged no DNS-01 TXT update at %s", n)
		}
		waitFor(t, "no TXT left at "+n, func() bool { return len(lookup(b.Addr, n, dns.TypeTXT)) == 0 })
	}
	// The hand-made record was not touched.
	if got := lookup(b.Addr, "blog.lab.test", dns.TypeA); !slices.Equal(got, []string{"192.0.2.1"}) {
		t.Errorf("blog.lab.test A = %v", got)
	}

	// A restart serves the stored certificates and asks the CA for nothing.
	vault := l.served("vault")
	l.stop()
	requests := l.p.Requests()
	l.start()
	if again := l.served("vault"); !again.Equal(vault) {
		t.Error("the wildcard was not the stored one after the restart")
	}
	if got := l.served("www").DNSNames; !slices.Equal(got, []string{"www.lab.test"}) {
		t.Errorf("www after the restart: certificate names %v", got)
	}
	time.Sleep(time.Second) // anything asked of the CA at start would have been asked by now
	if got := l.p.Requests() - requests; got != 0 {
		t.Errorf("%d requests to the CA after the restart, want 0", got)
	}
}

// BenchmarkTimeToNewServiceDNS01 is the time to new service on
// real servers: per round, from writing a new public service into the
// file of a running gateway to both a client getting 200 over HTTPS with
// the service's own certificate (obtained through DNS-01 in BIND, verified
// against pebble's root) and BIND answering its CNAME. Run it with
// `MODE=dns01 bench/acme.sh`.
func BenchmarkTimeToNewServiceDNS01(b *testing.B) {
	l := newBINDLab(b, b.TempDir(), "first")
	l.start()
	l.served("first")
	hosts := []string{"first"}
	var times, certAt, dnsAt []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		host := fmt.Sprintf("svc%d", i)
		hosts = append(hosts, "pub:"+host)
		start := time.Now()
		l.write(hosts...)
		var tCert, tDNS time.Duration
		for tCert == 0 || tDNS == 0 {
			if tDNS == 0 && slices.Equal(lookup(l.bind.Addr, host+".lab.test", dns.TypeCNAME), []string{"relay.lab.test."}) {
				tDNS = time.Since(start)
			}
			if tCert == 0 && ownCert(l, host) {
				tCert = time.Since(start)
			}
			if time.Since(start) > time.Minute {
				b.Fatalf("%s: not served with its own certificate and record within a minute (cert %v, dns %v)", host, tCert, tDNS)
			}
			time.Sleep(20 * time.Millisecond)
		}
		times = append(times, time.Since(start))
		certAt, dnsAt = append(certAt, tCert), append(dnsAt, tDNS)
	}
	b.StopTimer()
	median := func(d []time.Duration) float64 {
		d = slices.Clone(d)
		slices.Sort(d)
		return float64(d[len(d)/2].Milliseconds())
	}
	if os.Getenv("BENCH_LOGS") != "" {
		_ = os.WriteFile(os.Getenv("BENCH_LOGS"), []byte(l.logs.String()), 0o644)
	}
	b.ReportMetric(median(times), "median-ms")
	b.ReportMetric(float64(slices.Max(times).Milliseconds()), "max-ms")
	b.ReportMetric(median(certAt), "cert-median-ms")
	b.ReportMetric(median(dnsAt), "dns-median-ms")
}

// ownCert reports whether https://host.lab.test/ answers 200 with a
// certificate for host itself (not the wildcard) verified against pebble's root.
func ownCert(l *acmeLab, host string) bool {
	c := l.client()
	resp, err := c.Get("https://" + host + ".lab.test/")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK && resp.TLS != nil &&
		slices.Equal(resp.TLS.PeerCertificates[0].DNSNames, []string{host + ".lab.test"})
}
