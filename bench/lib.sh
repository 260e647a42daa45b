# shellcheck shell=bash disable=SC2034 # (globals used by the scripts that source this)
# Helpers shared by bench/http.sh and bench/memory.sh. Source it, don't run it.
#
# Every server is started with setsid, so it leads its own session and process
# group (PID = session id = group id). That lets us
#   - stop it and all its children (nginx workers) by that one PID, and
#   - add up the CPU time of every process in the session from /proc.
# An EXIT trap stops every server that is still running and removes the temp dir.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$BENCH_DIR")
CLK_TCK=$(getconf CLK_TCK)    # /proc/PID/stat counts CPU time in these ticks per second
APP_HOST=app.bench.localhost  # the one virtual host every path serves
WRK_LUA=$BENCH_DIR/wrk-loopback.lua

declare -a SERVER_PIDS=()     # session leaders we started and have not stopped yet
declare -A SERVER_LOG=()      # pid -> its stdout+stderr
declare -A SERVER_NAME=()     # pid -> a short name for messages
declare -A USED_PORTS=()      # ports handed out by free_port in this run

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# need CMD...: fail early with a hint when a tool is missing.
need() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || die "$c not found (run .ci/install-deps as root)"
  done
}

# make_tmp: a private temp dir in $TMP, cleaned up (with all servers) on exit.
# KEEP_TMP=1 keeps it for looking at configs and logs afterwards.
make_tmp() {
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/labgate-bench.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}

cleanup() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do
    stop_server "$pid"
  done
  if [[ -n ${KEEP_TMP:-} ]]; then
    log "kept $TMP"
  else
    rm -rf "$TMP"
  fi
}

# build_bins: labgate and the backend into $TMP.
build_bins() {
  log "building labgate and the backend"
  (cd "$REPO_DIR" && go build -o "$TMP/backend" ./bench/backend) || die "building bench/backend failed"
  LABGATE_BUILT=1
  if ! (cd "$REPO_DIR" && go build -o "$TMP/labgate" ./cmd/labgate) >"$TMP/labgate-build.log" 2>&1; then
    log "building labgate failed:"; cat "$TMP/labgate-build.log" >&2
    LABGATE_BUILT=0
  fi
}

# free_port VAR: a loopback TCP port nobody listens on, not handed out before,
# from 10000 up to the start of the ephemeral range (outgoing connections take
# ports from that range and would make bind fail).
free_port() {
  local _fp _lo # not "p": printf -v must not hit a local of this function
  read -r _lo _ </proc/sys/net/ipv4/ip_local_port_range
  ((_lo > 11000)) || die "ephemeral port range starts at $_lo: no room for servers below it"
  while :; do
    _fp=$((10000 + RANDOM % (_lo - 10000)))
    [[ -n ${USED_PORTS[$_fp]:-} ]] && continue
    [[ -n $(ss -Hltn "sport = :$_fp" 2>/dev/null) ]] && continue
    USED_PORTS[$_fp]=1
    printf -v "$1" '%s' "$_fp"
    return
  done
}

# start_server NAME CMD...: runs CMD in its own session, output to $TMP/NAME.log.
# Sets STARTED_PID.
start_server() {
  local name=$1 logf="$TMP/$1.log"
  shift
  # A background job of a non-interactive shell is no group leader, so setsid
  # does not fork: $! is the server itself and leads its session.
  setsid "$@" >"$logf" 2>&1 </dev/null &
  STARTED_PID=$!
  SERVER_PIDS+=("$STARTED_PID")
  SERVER_LOG[$STARTED_PID]=$logf
  SERVER_NAME[$STARTED_PID]=$name
}

# stop_server PID: TERM to the server's process group, KILL after 5 s.
stop_server() {
  local pid=$1 i
  if kill -0 -- "-$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      kill -0 -- "-$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  local kept=() p
  for p in "${SERVER_PIDS[@]}"; do
    [[ $p == "$pid" ]] || kept+=("$p")
  done
  SERVER_PIDS=("${kept[@]}")
}

# server_failed PID WHY: prints the server's log.
server_failed() {
  local pid=$1
  log "${SERVER_NAME[$pid]} (pid $pid): $2; its log:"
  sed 's/^/    /' "${SERVER_LOG[$pid]}" >&2
}

# wait_port PORT PID: waits up to 10 s for a listener on 127.0.0.1:PORT.
# Returns 1 (after printing the log) if the server exits or never listens.
wait_port() {
  local port=$1 pid=$2 i
  for ((i = 0; i < 100; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      server_failed "$pid" "exited before listening on $port"
      return 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  server_failed "$pid" "not listening on $port after 10 s"
  return 1
}

# session_ticks SID: utime+stime, in CLK_TCK ticks, summed over every process
# of session SID (all threads included; nginx's master and workers together).
session_ticks() {
  local sid=$1 total=0 f line
  local -a fld
  for f in /proc/[0-9]*/stat; do
    read -r line 2>/dev/null <"$f" || continue
    # Field 2 (comm) may hold spaces: split after its closing parenthesis.
    # fld[0] is field 3 (state), so session (6) is fld[3], utime (14) fld[11],
    # stime (15) fld[12].
    read -r -a fld <<<"${line##*) }"
    if [[ ${fld[3]} == "$sid" ]]; then
      total=$((total + fld[11] + fld[12]))
    fi
  done
  echo "$total"
}

# proc_mem PID: "VmRSS VmHWM" in KiB from /proc/PID/status.
# VmRSS = resident memory now, VmHWM = the peak resident memory so far.
proc_mem() {
  awk '/^VmRSS:/ {r=$2} /^VmHWM:/ {h=$2} END {print r, h}' "/proc/$1/status"
}

# check_get URL [CAFILE]: one GET with curl; the answer must be 200 with a
# 1 KiB body. With CAFILE the server's certificate is verified against it
# (and must be for $APP_HOST). Every name resolves to 127.0.0.1.
check_get() {
  local url=$1 ca=${2:-} port out
  port=${url##*:}; port=${port%%/*}
  local args=(-sS --max-time 5 -o "$TMP/check.body" -w '%{http_code}'
    --resolve "$APP_HOST:$port:127.0.0.1")
  [[ -n $ca ]] && args+=(--cacert "$ca")
  if ! out=$(curl "${args[@]}" "$url" 2>&1); then
    log "GET $url failed: $out"
    return 1
  fi
  if [[ $out != 200 || $(stat -c %s "$TMP/check.body") != 1024 ]]; then
    log "GET $url: status $out, $(stat -c %s "$TMP/check.body") body bytes (want 200, 1024)"
    head -c 300 "$TMP/check.body" >&2; echo >&2
    return 1
  fi
}

# run_wrk URL SECONDS OUT: wrk with the shared settings. The Lua script makes
# wrk connect to 127.0.0.1 whatever the URL's host, so Host and SNI are
# $APP_HOST on every path without touching /etc/hosts.
run_wrk() {
  wrk -t"${THREADS:-2}" -c"${CONNS:-64}" -d"$2s" --latency -s "$WRK_LUA" "$1" >"$3" 2>&1
}

# write_labgate_config FILE BACKEND_PORT EXTRA_SERVICES: labgate's bench config.
# Uses the ports in LG_PUB_HTTP LG_PUB_HTTPS LG_PRIV_HTTP LG_PRIV_HTTPS LG_ADMIN
# and $TMP/state as state_dir. EXTRA_SERVICES more services (svc001…) point at
# the same backend, half public, half private, to measure idle memory.
write_labgate_config() {
  local file=$1 backend=$2 extra=$3 i expose
  cat >"$file" <<EOF
version: 1
domain: bench.localhost            # service hosts without a dot get this suffix
state_dir: $TMP/state              # internal CA root in state_dir/ca/root.crt
log: { format: text, level: warn, access: false }
gateway:
  public:  { http: 127.0.0.1:$LG_PUB_HTTP, https: 127.0.0.1:$LG_PUB_HTTPS, trusted_relays: [127.0.0.0/8] }
  private: { http: [127.0.0.1:$LG_PRIV_HTTP], https: [127.0.0.1:$LG_PRIV_HTTPS], allow: [127.0.0.0/8] }
  admin: 127.0.0.1:$LG_ADMIN
services:
  - { name: app, host: app, expose: public, backend: "http://127.0.0.1:$backend", allow_http: true }
EOF
  for ((i = 1; i <= extra; i++)); do
    if ((i % 2)); then expose=public; else expose=private; fi
    printf '  - { name: svc%03d, host: svc%03d, expose: %s, backend: "http://127.0.0.1:%s", allow_http: true }\n' \
      "$i" "$i" "$expose" "$backend" >>"$file"
  done
}

# labgate_ports: picks the ports labgate's config uses.
labgate_ports() {
  free_port LG_PUB_HTTP
  free_port LG_PUB_HTTPS
  free_port LG_PRIV_HTTP
  free_port LG_PRIV_HTTPS
  free_port LG_ADMIN
}

# start_labgate CONFIG: starts labgate serve and waits for all its listeners
# and the internal CA's root. LABGATE_GOMAXPROCS, when set, becomes labgate's
# GOMAXPROCS (nothing else gets it). Sets LABGATE_PID; returns 1 on failure.
start_labgate() {
  local goenv=()
  [[ -n ${LABGATE_GOMAXPROCS:-} ]] && goenv=(GOMAXPROCS="$LABGATE_GOMAXPROCS")
  start_server labgate env "${goenv[@]}" "$TMP/labgate" serve -c "$1"
  LABGATE_PID=$STARTED_PID
  local p i
  for p in "$LG_PRIV_HTTP" "$LG_PRIV_HTTPS" "$LG_PUB_HTTP" "$LG_PUB_HTTPS" "$LG_ADMIN"; do
    wait_port "$p" "$LABGATE_PID" || return 1
  done
  for ((i = 0; i < 50; i++)); do
    [[ -s $TMP/state/ca/root.crt ]] && return 0
    sleep 0.1
  done
  server_failed "$LABGATE_PID" "no $TMP/state/ca/root.crt"
  return 1
}

# run_rounds runs every selected path ROUNDS times, the paths interleaved,
# leaving out a path once it has failed.
run_rounds() {
  local round id
  for ((round = 1; round <= ROUNDS; round++)); do
    ((ROUNDS == 1)) || log "### round $round of $ROUNDS"
    for id in "${SELECTED[@]}"; do
      [[ -n ${R_FAILED[$id]:-} ]] || run_path "$id"
    done
  done
}

# finish_report NAME prints the report, writes it to
# bench/results/NAME-<date>.md (or $RESULTS; "-" writes nothing), and fails
# when a path failed.
finish_report() {
  local table out id failed=0
  table=$(report)
  echo
  echo "$table"
  out=${RESULTS:-$BENCH_DIR/results/$1-$(date -u +%Y-%m-%d-%H%M).md}
  if [[ $out != - ]]; then
    mkdir -p "$(dirname "$out")"
    echo "$table" >"$out"
    log "written to $out"
  fi
  for id in "${SELECTED[@]}"; do
    [[ -z ${R_FAILED[$id]:-} ]] || failed=1
  done
  ((failed == 0)) || log "some paths failed: see above"
  return "$failed"
}

# select_paths sets SELECTED to the path ids given (each must be in LABEL),
# or to every path in PATHS when none is given.
select_paths() {
  local id
  if (($# > 0)); then
    SELECTED=("$@")
    for id in "${SELECTED[@]}"; do
      [[ -n ${LABEL[$id]:-} ]] || die "unknown path $id (paths: ${PATHS[*]})"
    done
  else
    SELECTED=("${PATHS[@]}")
  fi
}
