#!/usr/bin/env bash
# Layer-4 relay benchmark: labgate relay next to HAProxy mode tcp (with and
# without send-proxy-v2), rinetd, socat, and no relay at all, in one run.
#
#   bench/relay.sh                          # all paths (about 4 minutes)
#   DURATION=5 bench/relay.sh haproxy-pp labgate
#
# Per path, on loopback:
#   throughput  iperf3 -t DURATION through the relay, 1 stream and 4 streams
#               (-P 4): Gbit/s as the iperf3 server received it, and the
#               relay's CPU seconds per GB (10^9 bytes) moved.
#   churn       bench/churn: WORKERS connections at a time, each one connect,
#               write 1 byte, read the echoed byte, close; for DURATION s (after
#               a WARMUP s run). The echo server closes first (l4sink -once),
#               as with wrk and `Connection: close` in FACTS.md's baselines.
#               New connections per second, and the relay's CPU µs per
#               connection.
# CPU is user+system time of every process in the relay's session, from
# /proc/PID/stat before and after the measured run; the time of children
# that already exited (socat forks one per connection) is counted through
# their parent's cutime/cstime.
#
# PROXY headers: labgate relay always sends a PROXY v2 header, and iperf3
# cannot take one. So labgate relay and HAProxy send-proxy-v2 ("haproxy-pp")
# both go to bench/l4sink, which reads and drops the header and splices to
# iperf3 (for throughput), or echoes after dropping it (for churn): these two
# share every hop but the relay, and labgate is judged against haproxy-pp.
# HAProxy mode tcp without PROXY, rinetd and socat go straight to iperf3 and
# to an l4sink echo without header.
#
# Knobs (environment):
#   DURATION=10        seconds of each measured run (iperf3 -t, churn -d)
#   WARMUP=1           seconds of churn before each measured churn run
#   WORKERS=64         concurrent connections of the churn generator
#   ROUNDS=1           run all paths this many times, interleaved; medians
#   LABGATE_GOMAXPROCS GOMAXPROCS for labgate relay only (default unset = all
#                      cores; 1 may win on 2 cores, where the load generator
#                      owns the other one)
#   LABGATE_BIN=FILE   measure this labgate binary instead of building the
#                      work tree's (to compare two builds in one sitting)
#   KEEP_TMP=1         keep the temp dir (configs, logs, iperf3 JSON)
#   RESULTS=FILE       where the table goes (default
#                      bench/results/relay-<date>.md; RESULTS=- writes none)
# Arguments: path ids to run (default all, see PATHS).
#
# The bars (issue 3), for labgate against haproxy-pp of the same run: at
# least 0.9× its throughput at no more than half its CPU per GB, and at least
# 0.7× its connections/s at no more than 48 µs CPU per connection.
#
# Exit status: 0 when every path ran; 1 when a server failed to start or a
# measurement failed (its log is printed); the other paths still run.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
WORKERS=${WORKERS:-64}
ROUNDS=${ROUNDS:-1}

PATHS=(direct haproxy haproxy-pp labgate rinetd socat)

declare -A LABEL=(
  [direct]="direct (no relay)"
  [haproxy]="HAProxy mode tcp"
  [haproxy-pp]="HAProxy mode tcp, send-proxy-v2 → l4sink"
  [labgate]="labgate relay (PROXY v2) → l4sink"
  [rinetd]="rinetd"
  [socat]="socat fork"
)

# Results per path id, one value per round (space-separated): throughput
# (Gbit/s) and CPU s/GB for 1 and 4 streams, churn conn/s and µs/conn.
declare -A R_T1=() R_C1=() R_T4=() R_C4=() R_CONNS=() R_CPC=() R_NOTE=() R_FAILED=()

# ------------------------------------------------------------- helpers -----

build_relay_bins() {
  log "building labgate, l4sink and churn"
  (cd "$REPO_DIR" && go build -o "$TMP/l4sink" ./bench/l4sink && go build -o "$TMP/churn" ./bench/churn) ||
    die "building bench/l4sink or bench/churn failed"
  if [[ -n ${LABGATE_BIN:-} ]]; then
    cp "$LABGATE_BIN" "$TMP/labgate" || die "LABGATE_BIN=$LABGATE_BIN: cannot copy it"
  else
    (cd "$REPO_DIR" && go build -o "$TMP/labgate" ./cmd/labgate) || die "building labgate failed"
  fi
}

# relay_ticks SID: utime+stime+cutime+cstime in CLK_TCK ticks over every
# process of session SID (all threads; children reaped by a member count in
# its cutime/cstime).
relay_ticks() {
  local sid=$1 total=0 f line
  local -a fld
  for f in /proc/[0-9]*/stat; do
    read -r line 2>/dev/null <"$f" || continue
    # After "comm)": fld[0] is field 3, so session (6) is fld[3], utime (14)
    # fld[11], stime fld[12], cutime fld[13], cstime fld[14].
    read -r -a fld <<<"${line##*) }"
    if [[ ${fld[3]} == "$sid" ]]; then
      total=$((total + fld[11] + fld[12] + fld[13] + fld[14]))
    fi
  done
  echo "$total"
}

# start_relay ID PORT TARGET: the relay of path ID on 127.0.0.1:PORT to
# 127.0.0.1:TARGET. Sets STARTED_PID; returns 1 when it does not come up.
start_relay() {
  local id=$1 port=$2 target=$3 d=$TMP/$1-$2
  mkdir -p "$d"
  case $id in
    haproxy | haproxy-pp)
      local pp=""
      [[ $id == haproxy-pp ]] && pp=" send-proxy-v2"
      cat >"$d/haproxy.cfg" <<EOF
global
  maxconn 4096
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:$port
  default_backend be
backend be
  server target 127.0.0.1:$target$pp
EOF
      start_server "$id" haproxy -db -f "$d/haproxy.cfg"
      ;;
    labgate)
      local goenv=()
      [[ -n ${LABGATE_GOMAXPROCS:-} ]] && goenv=(GOMAXPROCS="$LABGATE_GOMAXPROCS")
      start_server "$id" env "${goenv[@]}" "$TMP/labgate" relay -gateway 127.0.0.1 -listen 127.0.0.1 \
        -admin off -forward "tcp:$port=$target"
      ;;
    rinetd)
      printf '127.0.0.1 %s 127.0.0.1 %s\n' "$port" "$target" >"$d/rinetd.conf"
      start_server "$id" rinetd -f -c "$d/rinetd.conf"
      ;;
    socat)
      start_server "$id" socat "TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr,backlog=4096" "TCP:127.0.0.1:$target"
      ;;
    *) die "no relay $id" ;;
  esac
  wait_port "$port" "$STARTED_PID"
}

# targets ID: sets T_IPERF and T_ECHO, where path ID's relay forwards to.
targets() {
  case $1 in
    haproxy-pp | labgate) T_IPERF=$SINK_PORT T_ECHO=$ECHO_PP_PORT ;;
    *) T_IPERF=$IPERF_PORT T_ECHO=$ECHO_PORT ;;
  esac
}

# iperf_run PORT STREAMS OUT: iperf3 -J through PORT; sets I_BYTES, I_GBPS.
# Retries once when the server is still busy with the previous test.
iperf_run() {
  local port=$1 streams=$2 out=$3 try
  for try in 1 2 3; do
    if iperf3 -c 127.0.0.1 -p "$port" -t "$DURATION" -P "$streams" -J >"$out" 2>&1; then
      break
    fi
    grep -q 'busy' "$out" || { log "iperf3 failed:"; head -c 2000 "$out" >&2; return 1; }
    sleep 1
    ((try < 3)) || { log "iperf3 server stayed busy"; return 1; }
  done
  # The end section's sum_received: bytes and bits_per_second.
  read -r I_BYTES I_GBPS < <(awk '
    /"sum_received"/ { in_sum = 1 }
    in_sum && /"bytes"/ { gsub(/[^0-9.e+]/, "", $2); bytes = $2 }
    in_sum && /"bits_per_second"/ { gsub(/[^0-9.e+]/, "", $2); bps = $2; in_sum = 0 }
    END { printf "%.0f %.2f\n", bytes, bps / 1e9 }' "$out")
  [[ ${I_BYTES:-0} != 0 ]] || { log "iperf3 moved no bytes:"; head -c 2000 "$out" >&2; return 1; }
}

# churn_run PORT SECONDS OUT: sets C_CONNS, C_RATE, C_ERRS.
churn_run() {
  "$TMP/churn" -addr "127.0.0.1:$1" -workers "$WORKERS" -d "${2}s" >"$3" 2>&1 || {
    log "churn failed:"; cat "$3" >&2; return 1
  }
  read -r C_CONNS C_RATE C_ERRS < <(awk '/^conns / { print $2, $6, $8 }' "$3")
}

# ---------------------------------------------------------------- paths ----

# measure_path ID: throughput (1 and 4 streams), then churn, for one path.
measure_path() {
  local id=$1 port pid t0 t1 streams
  targets "$id"

  # Throughput.
  if [[ $id == direct ]]; then
    port=$IPERF_PORT pid=""
  else
    free_port port
    start_relay "$id" "$port" "$T_IPERF" || return 1
    pid=$STARTED_PID
  fi
  for streams in 1 4; do
    [[ -z $pid ]] || t0=$(relay_ticks "$pid")
    iperf_run "$port" "$streams" "$TMP/$id-P$streams.json" || return 1
    local cpu="–"
    if [[ -n $pid ]]; then
      t1=$(relay_ticks "$pid")
      cpu=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v b="$I_BYTES" 'BEGIN { printf "%.3f", t / hz / (b / 1e9) }')
    fi
    if ((streams == 1)); then
      R_T1[$id]+=" $I_GBPS"; [[ $cpu == – ]] || R_C1[$id]+=" $cpu"
    else
      R_T4[$id]+=" $I_GBPS"; [[ $cpu == – ]] || R_C4[$id]+=" $cpu"
    fi
    log "  $streams stream(s): $I_GBPS Gbit/s, relay CPU $cpu s/GB"
  done
  [[ -z $pid ]] || stop_server "$pid"

  # Churn.
  if [[ $id == direct ]]; then
    port=$ECHO_PORT pid=""
  else
    free_port port
    start_relay "$id" "$port" "$T_ECHO" || return 1
    pid=$STARTED_PID
  fi
  churn_run "$port" "$WARMUP" "$TMP/$id-churn-warmup.txt" || return 1
  [[ -z $pid ]] || t0=$(relay_ticks "$pid")
  churn_run "$port" "$DURATION" "$TMP/$id-churn.txt" || return 1
  local cpc="–"
  if [[ -n $pid ]]; then
    t1=$(relay_ticks "$pid")
    cpc=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$C_CONNS" 'BEGIN { printf "%.1f", n ? t / hz * 1e6 / n : 0 }')
    R_CPC[$id]+=" $cpc"
  fi
  R_CONNS[$id]+=" $C_RATE"
  ((C_ERRS == 0)) || R_NOTE[$id]+="$C_ERRS churn errors; "
  log "  churn: $C_RATE conn/s, relay CPU $cpc µs/conn, $C_ERRS errors"
  [[ -z $pid ]] || stop_server "$pid"
}

# run_path ID: one path; afterwards stops every server but the shared ones.
run_path() {
  local id=$1 pid keep
  log "== $id: ${LABEL[$id]}"
  if ! measure_path "$id"; then
    R_FAILED[$id]=1
    log "   $id FAILED"
  fi
  for pid in "${SERVER_PIDS[@]}"; do
    for keep in "${SHARED_PIDS[@]}"; do
      [[ $pid == "$keep" ]] && continue 2
    done
    stop_server "$pid"
  done
}

# -------------------------------------------------------------- report -----

ratio() { # ratio A B: A/B with two decimals, "–" when either is missing
  awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a == "" || b == "" || b == 0) print "–"; else printf "%.2f", a / b }'
}

median() { # median VALUES...
  (($# > 0)) || { echo ""; return; }
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    print m }'
}

# med ARRAY ID: the median of R_ARRAY[ID] ("" when none).
med() {
  local -n arr=$1
  # shellcheck disable=SC2086 # word splitting of the value list is intended
  median ${arr[$2]:-}
}

fmt() { # fmt FORMAT VALUE: printf, or "–" for no value
  # shellcheck disable=SC2059 # the format is the argument
  if [[ -z $2 ]]; then echo "–"; else printf "$1" "$2"; fi
}

# verdict NAME VALUE OP BAR: "NAME VALUE (bar OP BAR): met|MISSED"
verdict() {
  local ok
  ok=$(awk -v v="$2" -v b="$4" -v op="$3" 'BEGIN {
    if (v == "" || v == "–") { print "no value"; exit }
    if ((op == ">=" && v >= b) || (op == "<=" && v <= b)) print "met"; else print "MISSED" }')
  echo "- $1: $2 (bar $3 $4): **$ok**"
}

report() {
  local id
  echo "## Relay benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "\`bench/relay.sh\`: loopback; iperf3 -t${DURATION} (1 and 4 streams); churn: ${WORKERS} workers × (connect, 1 byte each way, close) for ${DURATION}s after ${WARMUP}s; medians of $ROUNDS round(s), paths interleaved."
  echo "Machine: $(nproc) cores, $(uname -sr). labgate ${LABGATE_BIN:-$(git -C "$REPO_DIR" describe --always --dirty 2>/dev/null || echo '?')}, $(go version | awk '{print $3}'), LABGATE_GOMAXPROCS=${LABGATE_GOMAXPROCS:-unset}."
  echo "Load average when the run started: $LOAD_AT_START."
  echo "Peers: HAProxy $(haproxy -v | awk 'NR==1 {print $3}'), rinetd $(rinetd -v 2>&1 | awk '{print $2; exit}'), socat $(socat -V | awk '/socat version/ {print $3; exit}'), iperf3 $(iperf3 -v | awk 'NR==1 {print $2}')."
  echo
  echo "CPU: user+system time of the relay's processes (s per GB moved; µs per connection). × HAProxy: against HAProxy mode tcp;"
  echo "× pp: against HAProxy send-proxy-v2 → l4sink, which shares every hop with labgate's path but the relay."
  echo
  echo "| path | 1 stream Gbit/s | × HAProxy | × pp | CPU s/GB | 4 streams Gbit/s | × HAProxy | × pp | CPU s/GB | churn conn/s | × HAProxy | × pp | CPU µs/conn | CPU × pp | notes |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  local h1 h4 hc p1 p4 pc t1 t4 c1 c4 cn cpc
  h1=$(med R_T1 haproxy) h4=$(med R_T4 haproxy) hc=$(med R_CONNS haproxy)
  p1=$(med R_T1 haproxy-pp) p4=$(med R_T4 haproxy-pp) pc=$(med R_CONNS haproxy-pp)
  for id in "${SELECTED[@]}"; do
    if [[ -n ${R_FAILED[$id]:-} ]]; then
      echo "| ${LABEL[$id]} | failed | | | | | | | | | | | | | see the log |"
      continue
    fi
    t1=$(med R_T1 "$id") t4=$(med R_T4 "$id") c1=$(med R_C1 "$id") c4=$(med R_C4 "$id")
    cn=$(med R_CONNS "$id") cpc=$(med R_CPC "$id")
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$id]}" \
      "$(fmt %.2f "$t1")" "$(ratio "$t1" "$h1")" "$(ratio "$t1" "$p1")" "$(fmt %.3f "$c1")" \
      "$(fmt %.2f "$t4")" "$(ratio "$t4" "$h4")" "$(ratio "$t4" "$p4")" "$(fmt %.3f "$c4")" \
      "$(fmt %.0f "$cn")" "$(ratio "$cn" "$hc")" "$(ratio "$cn" "$pc")" "$(fmt %.1f "$cpc")" \
      "$(ratio "$cpc" "$(med R_CPC haproxy-pp)")" "${R_NOTE[$id]:-}"
  done
  if [[ -n ${R_T1[labgate]:-} && -n ${R_T1[haproxy-pp]:-} ]]; then
    echo
    echo "Bars (issue 3), labgate relay against HAProxy send-proxy-v2 of this run:"
    verdict "throughput, 1 stream, × HAProxy" "$(ratio "$(med R_T1 labgate)" "$p1")" ">=" 0.9
    verdict "throughput, 4 streams, × HAProxy" "$(ratio "$(med R_T4 labgate)" "$p4")" ">=" 0.9
    verdict "CPU per GB, 1 stream, × HAProxy" "$(ratio "$(med R_C1 labgate)" "$(med R_C1 haproxy-pp)")" "<=" 0.5
    verdict "CPU per GB, 4 streams, × HAProxy" "$(ratio "$(med R_C4 labgate)" "$(med R_C4 haproxy-pp)")" "<=" 0.5
    verdict "churn, × HAProxy conn/s" "$(ratio "$(med R_CONNS labgate)" "$pc")" ">=" 0.7
    verdict "churn, CPU µs per connection" "$(fmt %.1f "$(med R_CPC labgate)")" "<=" 48
    echo
    echo "The 48 µs bar was set where HAProxy measured ≈35 µs per connection (FACTS.md, wrk with Connection: close),"
    echo "i.e. ≈1.37× HAProxy's CPU per connection; HAProxy send-proxy-v2 measured $(fmt %.1f "$(med R_CPC haproxy-pp)") µs in this run:"
    verdict "churn, CPU per connection × HAProxy" "$(ratio "$(med R_CPC labgate)" "$(med R_CPC haproxy-pp)")" "<=" 1.37
  fi
}

main() {
  need go ss iperf3 haproxy rinetd socat
  select_paths "$@"

  LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
  make_tmp
  build_relay_bins

  # The far ends, shared by every path: iperf3's server, a PROXY-dropping
  # splicer in front of it, and echo servers without and with a header.
  SHARED_PIDS=()
  free_port IPERF_PORT; free_port SINK_PORT; free_port ECHO_PORT; free_port ECHO_PP_PORT
  start_server iperf3 iperf3 -s -p "$IPERF_PORT"
  SHARED_PIDS+=("$STARTED_PID"); wait_port "$IPERF_PORT" "$STARTED_PID" || exit 1
  start_server l4sink-iperf "$TMP/l4sink" -listen "127.0.0.1:$SINK_PORT" -proxy -forward "127.0.0.1:$IPERF_PORT"
  SHARED_PIDS+=("$STARTED_PID"); wait_port "$SINK_PORT" "$STARTED_PID" || exit 1
  start_server l4sink-echo "$TMP/l4sink" -listen "127.0.0.1:$ECHO_PORT" -once
  SHARED_PIDS+=("$STARTED_PID"); wait_port "$ECHO_PORT" "$STARTED_PID" || exit 1
  start_server l4sink-echo-pp "$TMP/l4sink" -listen "127.0.0.1:$ECHO_PP_PORT" -proxy -once
  SHARED_PIDS+=("$STARTED_PID"); wait_port "$ECHO_PP_PORT" "$STARTED_PID" || exit 1

  run_rounds
  finish_report relay
}

main "$@"
