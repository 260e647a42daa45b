package daemon

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labgate/labgate/internal/config"
	"github.com/labgate/labgate/internal/relay"
	"github.com/labgate/labgate/internal/testpeer"
)

// TestRelayPathMeasured runs labgate relay serving the relay path endpoint
// and a gateway whose file gains relay.speedtest on a reload: the gateway
// measures the path from its own address (relay.gateway, the only source
// the relay answers), exports it and serves the history at /api/relay-path;
// the history is in state_dir; removing the section stops the measurements.
func TestRelayPathMeasured(t *testing.T) {
	l := startLab(t)
	port := testpeer.FreePort(t, "127.0.0.46")
	withSpeedtest := fmt.Sprintf(labConfig, l.backend["www"].URL, l.backend["vault"].URL) +
		"relay:\n  gateway: 127.0.0.11\n  speedtest: { listen: \"127.0.0.46:" + port + "\", interval: 1s, budget: 262144, samples: 5 }\n"

	// The relay reads its endpoint from the same file, and starts first.
	rd := runRelay(t, RelayOptions{
		Load: func() (RelaySetup, error) {
			cfg, err := config.Parse(l.file, []byte(withSpeedtest), config.Options{})
			if err != nil {
				return RelaySetup{}, err
			}
			ro := relay.Options{Routes: []relay.Route{{Name: "https", Proto: "tcp", Listen: "127.0.0.46:0", Target: l.addr(pubHTTPS)}}, ProbeInterval: -1}
			return RelaySetup{Relay: ro, Speedtest: RelaySpeedtestFromConfig(cfg)}, nil
		},
		Stderr: l.logs,
	})
	if a := rd.Addr("speedtest"); a == nil || a.String() != "127.0.0.46:"+port {
		t.Fatalf("relay path endpoint on %v, want 127.0.0.46:%s", a, port)
	}

	l.write(withSpeedtest)
	waitFor(t, "reload", func() bool { return l.d.generation() == 2 })

	// The relay answers nobody but the gateway's address.
	if code, body := getBody(t, "http://127.0.0.46:"+port+"/ping"); code != http.StatusForbidden {
		t.Errorf("the relay path endpoint answered 127.0.0.1: %d %q", code, body)
	}

	var rep relayPathReport
	waitFor(t, "a successful measurement at /api/relay-path", func() bool {
		code, body := getBody(t, "http://"+l.addr(admin)+"/api/relay-path")
		if code != http.StatusOK {
			t.Fatalf("/api/relay-path: %d %q", code, body)
		}
		if err := json.Unmarshal([]byte(body), &rep); err != nil {
			t.Fatalf("/api/relay-path: %v in %q", err, body)
		}
		for _, r := range rep.Results {
			if r.OK() {
				return true
			}
		}
		return false
	})
	if rep.Relay != "127.0.0.46:"+port || rep.IntervalSeconds != 1 || rep.BudgetBytes != 262144 {
		t.Errorf("report %+v", rep)
	}
	r := rep.Results[len(rep.Results)-1]
	if r.RTT <= 0 || r.Down <= 0 || r.Up <= 0 || r.Bytes != 262144 {
		t.Errorf("measurement %+v, want positive latency and throughput over the budget", r)
	}
	for _, r := range rep.Results {
		if !r.OK() {
			t.Errorf("failed measurement %+v (logs:\n%s)", r, grep(l.logs.String(), "relay path"))
		}
	}
	m := scrape(t, l.addr(admin))
	for _, s := range []string{"labgate_relay_path_rtt_seconds ", `labgate_relay_path_throughput_bytes_per_second{direction="down"}`,
		`labgate_relay_path_runs_total{result="success"}`, "labgate_relay_path_bytes_total "} {
		if !strings.Contains(m, s) {
			t.Errorf("no %s in metrics:\n%s", s, grep(m, "relay_path"))
		}
	}
	b, err := os.ReadFile(filepath.Join(l.dir, "state", "relay-path.json"))
	if err != nil || !strings.Contains(string(b), `"rtt_seconds"`) {
		t.Errorf("history in state_dir: %v %s", err, b)
	}

	// Without the section, the gateway stops measuring.
	l.write(fmt.Sprintf(labConfig, l.backend["www"].URL, l.backend["vault"].URL))
	waitFor(t, "reload", func() bool { return l.d.generation() == 3 })
	if code, body := getBody(t, "http://"+l.addr(admin)+"/api/relay-path"); code != http.StatusNotFound {
		t.Errorf("/api/relay-path without relay.speedtest: %d %q", code, body)
	}
}

func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
