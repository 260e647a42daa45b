#!/usr/bin/env bash
# labgate's cost of health checks: CPU and memory of `labgate serve` with
# SERVICES services, each checked over HTTP every INTERVAL, against one local
# backend, compared with the same services unchecked.
#
#   bench/checks.sh
#   SERVICES=1000 INTERVAL=10s DURATION=180 bench/checks.sh
#
# For each of two runs (no health section; `health: {interval: INTERVAL}`),
# it starts labgate, waits WARMUP seconds (every check has run once by then:
# checks start at a random point of their first interval), then measures for
# DURATION seconds:
#   CPU %     labgate's user+system CPU time over the wall time (100 % = one core)
#   VmRSS     resident memory at the end, MiB
#   VmHWM     peak resident memory, MiB
#   checks passing   labgate_check_success == 1 on /metrics at the end
#                    (SERVICES / INTERVAL checks run per second)
# The http check's result on each backend also decides the gateway's load
# balancing: one request per service and interval (before, the gateway probed
# each backend as well: two).
#
# Knobs: SERVICES=1000, INTERVAL=10s, TIMEOUT=1s, DURATION=180, WARMUP=15,
# LABGATE_GOMAXPROCS, KEEP_TMP=1, RESULTS=FILE (default
# bench/results/checks-<date>.md; - for none).
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

SERVICES=${SERVICES:-1000}
INTERVAL=${INTERVAL:-10s}
DURATION=${DURATION:-180}
WARMUP=${WARMUP:-15}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# write_config FILE HEALTH: SERVICES private services on the backend, each with
# HEALTH ("" for none) as its health section.
write_config() {
  local file=$1 health=$2 i
  cat >"$file" <<EOF
version: 1
domain: bench.localhost
state_dir: $TMP/state
log: { format: text, level: warn, access: false }
gateway:
  private: { http: [127.0.0.1:$LG_PRIV_HTTP], https: [127.0.0.1:$LG_PRIV_HTTPS], allow: [127.0.0.0/8] }
  admin: 127.0.0.1:$LG_ADMIN
services:
EOF
  for ((i = 1; i <= SERVICES; i++)); do
    printf '  - { name: svc%04d, host: svc%04d, backend: "http://127.0.0.1:%s"%s }\n' \
      "$i" "$i" "$BACKEND_PORT" "${health:+, health: $health}" >>"$file"
  done
}

# measure LABEL HEALTH: one run; prints a table row.
measure() {
  local label=$1 health=$2 t0 t1 c0 c1 rss hwm passing
  write_config "$TMP/labgate.yaml" "$health"
  start_server labgate env ${LABGATE_GOMAXPROCS:+GOMAXPROCS=$LABGATE_GOMAXPROCS} "$TMP/labgate" serve -c "$TMP/labgate.yaml"
  LABGATE_PID=$STARTED_PID
  wait_port "$LG_ADMIN" "$LABGATE_PID" || return 1
  log "$label: warming up ${WARMUP}s, then measuring ${DURATION}s"
  sleep "$WARMUP"
  c0=$(session_ticks "$LABGATE_PID")
  t0=$(date +%s.%N)
  sleep "$DURATION"
  c1=$(session_ticks "$LABGATE_PID")
  t1=$(date +%s.%N)
  read -r rss hwm < <(proc_mem "$LABGATE_PID")
  passing=$(curl -s "http://127.0.0.1:$LG_ADMIN/metrics" | awk '/^labgate_check_success\{/ && $2 == 1 {n++} END {print n+0}')
  stop_server "$LABGATE_PID"
  awk -v l="$label" -v c="$((c1 - c0))" -v hz="$CLK_TCK" -v t0="$t0" -v t1="$t1" -v rss="$(mib "$rss")" -v hwm="$(mib "$hwm")" -v p="$passing" \
    'BEGIN { printf "| %s | %.2f | %s | %s | %s |\n", l, 100 * c / hz / (t1 - t0), rss, hwm, p }'
}

main() {
  need go curl ss
  make_tmp
  build_bins
  ((LABGATE_BUILT == 1)) || exit 1
  free_port BACKEND_PORT
  start_server backend "$TMP/backend" -addr "127.0.0.1:$BACKEND_PORT"
  wait_port "$BACKEND_PORT" "$STARTED_PID" || exit 1
  labgate_ports

  local base checked table
  base=$(measure "$SERVICES services, no checks" "") || exit 1
  checked=$(measure "$SERVICES services, an http check every $INTERVAL" "{ interval: $INTERVAL, timeout: ${TIMEOUT:-1s} }") || exit 1
  table=$(
    echo "## labgate health checks, $SERVICES services, LABGATE_GOMAXPROCS=${LABGATE_GOMAXPROCS:-unset}, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Measured over ${DURATION}s after ${WARMUP}s of warm-up; CPU % of one core."
    echo
    echo "| run | CPU % | VmRSS MiB | VmHWM MiB | checks passing |"
    echo "|---|---:|---:|---:|---:|"
    echo "$base"
    echo "$checked"
  )
  echo
  echo "$table"
  local out=${RESULTS:-$BENCH_DIR/results/checks-$(date -u +%Y-%m-%d-%H%M).md}
  if [[ $out != - ]]; then
    mkdir -p "$(dirname "$out")"
    echo "$table" >"$out"
    log "written to $out"
  fi
}

main "$@"
