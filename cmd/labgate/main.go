// Command labgate is the front door of a homelab: `labgate serve` is the
// gateway, `labgate check` validates a config. Run `labgate help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/labgate/labgate/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
