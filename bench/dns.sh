#!/usr/bin/env bash
# DNS: how long labgate's planner, an RFC2136 reconciliation against a real
# BIND and the embedded DNS server take on this machine. Needs named
# (.ci/install-deps). Prints go test's benchmark lines; medians are up to you.
#
#   bench/dns.sh            # 5 rounds each
#   COUNT=3 bench/dns.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
count=${COUNT:-5}
go test -run '^$' -count "$count" -bench 'Plan$' ./internal/dns | grep '^Benchmark'
go test -run '^$' -count "$count" -benchtime 5x -bench 'BINDReconcile' ./internal/dns | grep '^Benchmark'
go test -run '^$' -count "$count" -benchtime 2000x -bench 'ServeQuery' ./internal/dns | grep '^Benchmark'
