#!/usr/bin/env bash
# labgate's memory: resident set size with 100 services configured, idle after
# startup, and under the HTTP benchmark's load.
#
#   bench/memory.sh
#   SERVICES=1000 DURATION=20 bench/memory.sh
#
# It prints, in MiB, from /proc/PID/status:
#   VmRSS  resident memory at that moment
#   RssAnon, RssFile  VmRSS split: labgate's own memory (heap, stacks), and pages of
#          the binary and of mapped files (history.db), which the kernel can drop
#   VmHWM  the highest resident memory since labgate started ("high water mark")
# at three points:
#   idle          SETTLE seconds after labgate listens, no request served yet
#   private HTTP  right after DURATION s of wrk -t2 -c64 on gateway.private.http
#   private TLS   the same on gateway.private.https (TLS state per connection)
# plus the peak VmRSS sampled every 0.5 s during each load.
#
# Knobs: SERVICES=100 (configured services; the first one, app, gets the load),
# DURATION=10, SETTLE=2, THREADS/CONNS as in http.sh, LABGATE_GOMAXPROCS,
# KEEP_TMP=1, RESULTS=FILE (default bench/results/memory-<date>.md; - for none).
# VmHWM is kept lazily by the kernel and may lag a sampled VmRSS by a little. Exit status 1 when labgate does not build or start.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

SERVICES=${SERVICES:-100}
DURATION=${DURATION:-10}
SETTLE=${SETTLE:-2}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; } # KiB → MiB

# row LABEL PEAK_RSS_KIB: one table row with labgate's VmRSS and VmHWM now,
# and VmRSS split into RssAnon (heap, stacks: labgate's own memory) and
# RssFile (pages of the binary and of mapped files such as history.db, which
# the kernel can drop and read again under memory pressure).
row() {
  local rss hwm anon file
  read -r rss hwm < <(proc_mem "$LABGATE_PID")
  anon=$(awk '/^RssAnon:/ {print $2}' "/proc/$LABGATE_PID/status")
  file=$(awk '/^RssFile:/ {print $2}' "/proc/$LABGATE_PID/status")
  printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$(mib "$rss")" "$(mib "$anon")" "$(mib "$file")" "$(mib "$hwm")" "${2:+$(mib "$2")}"
}

# load URL: wrk for DURATION s while sampling VmRSS; prints the peak (KiB).
load() {
  local url=$1 peak=0 rss wrk_pid
  check_get "$url" "$TMP/state/ca/root.crt" || return 1
  run_wrk "$url" "$DURATION" "$TMP/wrk.txt" &
  wrk_pid=$!
  while kill -0 "$wrk_pid" 2>/dev/null; do
    read -r rss _ < <(proc_mem "$LABGATE_PID")
    ((rss > peak)) && peak=$rss
    sleep 0.5
  done
  wait "$wrk_pid" || { cat "$TMP/wrk.txt" >&2; return 1; }
  log "  $(awk '/^Requests\/sec:/ {print $2}' "$TMP/wrk.txt") req/s"
  echo "$peak"
}

main() {
  need go wrk curl ss
  make_tmp
  build_bins
  ((LABGATE_BUILT == 1)) || exit 1

  free_port BACKEND_PORT
  start_server backend "$TMP/backend" -addr "127.0.0.1:$BACKEND_PORT"
  BACKEND_PID=$STARTED_PID
  wait_port "$BACKEND_PORT" "$BACKEND_PID" || exit 1

  labgate_ports
  write_labgate_config "$TMP/labgate.yaml" "$BACKEND_PORT" $((SERVICES - 1))
  log "starting labgate with $SERVICES services"
  start_labgate "$TMP/labgate.yaml" || exit 1
  sleep "$SETTLE"

  local idle http_peak tls_peak table
  idle=$(row "idle, $SERVICES services" "")
  log "load: private HTTP"
  http_peak=$(load "http://$APP_HOST:$LG_PRIV_HTTP/") || exit 1
  local after_http
  after_http=$(row "after ${DURATION}s private HTTP (wrk -c${CONNS:-64})" "$http_peak")
  log "load: private TLS"
  tls_peak=$(load "https://$APP_HOST:$LG_PRIV_HTTPS/") || exit 1

  table=$(
    echo "## labgate memory, $SERVICES services, LABGATE_GOMAXPROCS=${LABGATE_GOMAXPROCS:-unset}, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "| when | VmRSS MiB | RssAnon MiB | RssFile MiB | VmHWM MiB | peak VmRSS during load MiB |"
    echo "|---|---:|---:|---:|---:|---:|"
    echo "$idle"
    echo "$after_http"
    row "after ${DURATION}s private TLS (wrk -c${CONNS:-64})" "$tls_peak"
  )
  echo
  echo "$table"
  local out=${RESULTS:-$BENCH_DIR/results/memory-$(date -u +%Y-%m-%d-%H%M).md}
  if [[ $out != - ]]; then
    mkdir -p "$(dirname "$out")"
    echo "$table" >"$out"
    log "written to $out"
  fi
}

main "$@"
