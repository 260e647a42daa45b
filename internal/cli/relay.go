package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/labgate/labgate/internal/daemon"
	"github.com/labgate/labgate/internal/relay"
)

// forwards collects -forward flags: proto:port[=gatewayport].
type forwards []string

func (f *forwards) String() string     { return strings.Join(*f, ",") }
func (f *forwards) Set(s string) error { *f = append(*f, s); return nil }

func relayCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("relay", stderr)
	path := fs.String("c", "", "lab `file`: routes come from its relay and gateway.public sections and its public tcp/udp services")
	gateway := fs.String("gateway", "", "without -c: the gateway's VPN `address`")
	listen := fs.String("listen", "0.0.0.0", "without -c: the `address` to bind public ports on")
	admin := fs.String("admin", "127.0.0.1:9181", "without -c: /metrics and /healthz `address` (\"off\" disables)")
	var fwd forwards
	fs.Var(&fwd, "forward", "without -c: `proto:port[=gatewayport]` to forward, repeatable (tcp:443=10443 tcp:80=10080 tcp:25 udp:51820); port 443 has its ClientHello peeked for SNI/ALPN")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var load func() (daemon.RelaySetup, error)
	switch {
	case *path != "" && (*gateway != "" || len(fwd) > 0):
		return usageError{"use -c FILE or -gateway/-forward flags, not both"}
	case *path != "":
		load = func() (daemon.RelaySetup, error) {
			cfg, err := loadUnreadSecrets(*path) // the relay uses no secret of the lab
			if err != nil {
				return daemon.RelaySetup{}, err
			}
			return daemon.RelayFromConfig(cfg)
		}
	default:
		ro, err := relayFromFlags(*gateway, *listen, fwd)
		if err != nil {
			return usageError{err.Error()}
		}
		if *admin == "off" {
			*admin = ""
		}
		load = func() (daemon.RelaySetup, error) { return daemon.RelaySetup{Relay: ro, Admin: *admin}, nil }
	}
	// Run loads first and returns a refused config before binding anything.
	d := daemon.NewRelay(daemon.RelayOptions{Load: load, Watch: *path, Stderr: stderr, Version: buildVersion()})
	return reportConfigError("relay", d.Run(ctx), stderr)
}

// relayFromFlags builds the relay's options for a VPS without the lab file.
func relayFromFlags(gateway, listen string, fwd []string) (relay.Options, error) {
	gw, err := netip.ParseAddr(gateway)
	if err != nil {
		return relay.Options{}, fmt.Errorf("-gateway %q is not an IP address", gateway)
	}
	la, err := netip.ParseAddr(listen)
	if err != nil {
		return relay.Options{}, fmt.Errorf("-listen %q is not an IP address", listen)
	}
	if len(fwd) == 0 {
		return relay.Options{}, fmt.Errorf("give at least one -forward, e.g. -forward tcp:443=10443")
	}
	ro := relay.Options{ConnectTimeout: 5 * time.Second, IdleTimeout: time.Hour, MaxConnsPerSource: 256, UDPFlowTimeout: time.Minute}
	for _, f := range fwd {
		proto, ports, ok := strings.Cut(f, ":")
		if !ok || proto != "tcp" && proto != "udp" {
			return relay.Options{}, fmt.Errorf("-forward %q: want tcp:PORT[=GATEWAYPORT] or udp:PORT[=GATEWAYPORT]", f)
		}
		pub, to, hasTo := strings.Cut(ports, "=")
		if !hasTo {
			to = pub
		}
		p, err1 := strconv.Atoi(pub)
		q, err2 := strconv.Atoi(to)
		if err1 != nil || err2 != nil || p < 1 || p > 65535 || q < 1 || q > 65535 {
			return relay.Options{}, fmt.Errorf("-forward %q: ports are numbers from 1 to 65535", f)
		}
		ro.Routes = append(ro.Routes, relay.Route{
			Name:    fmt.Sprintf("%s/%d", proto, p),
			Proto:   proto,
			Listen:  net.JoinHostPort(la.String(), pub),
			Target:  net.JoinHostPort(gw.String(), to),
			PeekTLS: proto == "tcp" && p == 443,
		})
		if proto == "tcp" && p == 80 {
			// The gateway's plain-HTTP public listener answers the relay's probe;
			// other ports may be anything (mail, SSH) and are never probed.
			ro.ProbeTargets = append(ro.ProbeTargets, net.JoinHostPort(gw.String(), to))
		}
	}
	if len(ro.ProbeTargets) == 0 {
		ro.ProbeInterval = -1
	}
	return ro, nil
}
