#!/usr/bin/env bash
# Time to new service with ACME certificates: from writing a new service into
# the file of a running `labgate serve` to a client getting 200 over HTTPS with
# a certificate that verifies against the CA's root. The CA is a real pebble
# (Debian's, `sudo .ci/install-deps`); the challenge is HTTP-01 or TLS-ALPN-01
# answered by the gateway's own listeners; the file watcher's reaction is
# included. ROUNDS (default 10) new services are added one after the other to
# the same gateway; prints the Go benchmark line with median-ms and max-ms.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v pebble >/dev/null || { echo "acme.sh: pebble is not installed (sudo .ci/install-deps)" >&2; exit 1; }
go test -run '^$' -bench '^BenchmarkTimeToNewService$' -benchtime "${ROUNDS:-10}x" ./internal/daemon/
