#!/usr/bin/env bash
# Time to new service with ACME certificates: from writing a new service into
# the file of a running `labgate serve` to a client getting 200 over HTTPS with
# a certificate that verifies against the CA's root. The CA is a real pebble
# (Debian's, `sudo .ci/install-deps`); the challenge is HTTP-01 or TLS-ALPN-01
# answered by the gateway's own listeners; the file watcher's reaction is
# included. ROUNDS (default 10) new services are added one after the other to
# the same gateway; prints the Go benchmark line with median-ms and max-ms.
#
# MODE=dns01 is the full path of issue 4: a real BIND 9 holds the zone and
# pebble resolves and validates against it; labgate's rfc2136 provider writes
# both the service's CNAME (the reconciler) and the DNS-01 TXT values. Each
# round adds a public service (its own certificate) and ends when a client gets
# 200 over HTTPS with that certificate, verified against pebble's root, AND
# BIND (queried directly) answers the service's record. Also prints
# cert-median-ms and dns-median-ms, each measured from the same start.
# BENCH_LOGS=FILE writes the gateway's debug log there (where the time goes).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v pebble >/dev/null || { echo "acme.sh: pebble is not installed (sudo .ci/install-deps)" >&2; exit 1; }
case "${MODE:-}" in
"") bench='^BenchmarkTimeToNewService$' ;;
dns01)
	[ -x /usr/sbin/named ] || command -v named >/dev/null || { echo "acme.sh: BIND (named) is not installed (sudo .ci/install-deps)" >&2; exit 1; }
	bench='^BenchmarkTimeToNewServiceDNS01$' ;;
*) echo "acme.sh: MODE is empty (HTTP-01/TLS-ALPN-01) or dns01" >&2; exit 2 ;;
esac
go test -run '^$' -bench "$bench" -benchtime "${ROUNDS:-10}x" ./internal/daemon/
