#!/usr/bin/env bash
# HTTP proxy benchmark: labgate next to nginx, HAProxy and Caddy, in one run.
#
#   bench/http.sh                      # all paths, 10 s each (about 3 minutes)
#   DURATION=5 bench/http.sh direct nginx labgate-private
#
# Every path proxies to the same Go backend (bench/backend, 1 KiB bodies,
# keep-alive) on loopback and is loaded with `wrk -t2 -c64` (after a short
# warm-up). wrk, the backend and the proxy share this machine's cores, so
# absolute numbers drift between runs: compare paths of the same run only.
#
# Per path it records:
#   req/s       wrk's requests per second
#   × direct    req/s divided by the direct path's (the backend without proxy)
#   × Caddy     req/s divided by Caddy's of the same kind (plain or TLS)
#   p50, p99    wrk --latency percentiles, in ms
#   proxy CPU   user+system CPU time of the proxy processes during the measured
#               run (from /proc/PID/stat, all processes and threads) divided by
#               the requests served, in µs per request. For two-process paths
#               (HAProxy in front) each process and the sum. This is the number
#               that holds still on small shared machines.
#   backend CPU the same for the backend: should be about equal on all paths
#               (a proxy that does not reuse upstream connections shows here).
#
# Knobs (environment):
#   DURATION=10          seconds of each measured run
#   WARMUP=2             seconds of the warm-up before it (not measured)
#   ROUNDS=1             run all paths this many times, interleaved, and
#                        report medians (3 smooths out a noisy machine)
#   THREADS=2 CONNS=64   wrk -t and -c
#   LABGATE_GOMAXPROCS   GOMAXPROCS for labgate only (default: unset = all
#                        cores). 1 often wins here because wrk owns the other
#                        core; try both. The peers run with their defaults
#                        (nginx worker_processes auto, HAProxy one thread per
#                        core, Caddy GOMAXPROCS = cores).
#   KEEP_TMP=1           keep the temp dir (configs, logs, wrk outputs)
#   RESULTS=FILE         where to write the table (default
#                        bench/results/http-<date>.md; RESULTS=- writes none)
# Arguments: path ids to run (default all, see PATHS below).
#
# Host names: every path is addressed as app.bench.localhost (Host header and
# TLS SNI). wrk-loopback.lua makes wrk connect to 127.0.0.1 for it, curl gets
# --resolve; /etc/hosts is not touched. All TLS paths use an ECDSA P-256
# certificate: nginx and Caddy one made here with openssl, labgate one from its
# internal CA. Each path is checked once with curl first (status 200, 1 KiB,
# certificate verified against the CA that issued it).
#
# Exit status: 0 when every path ran; 1 when a server failed to start or a
# check failed (its log is printed) — the other paths still run.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-1}

# All path ids, in table order: plain HTTP first, then TLS.
PATHS=(direct nginx haproxy caddy seed labgate-private labgate-public
  nginx-tls caddy-tls seed-tls labgate-private-tls labgate-public-tls)

declare -A LABEL=(
  [direct]="direct to the backend"
  [nginx]="nginx proxy_pass (keepalive upstream)"
  [haproxy]="HAProxy mode http"
  [caddy]="Caddy reverse_proxy"
  [seed]="seed: HAProxy tcp send-proxy-v2 → nginx proxy_protocol"
  [labgate-private]="labgate private (gateway.private.http)"
  [labgate-public]="labgate public: HAProxy tcp send-proxy-v2 → gateway.public.http"
  [nginx-tls]="nginx TLS"
  [caddy-tls]="Caddy TLS"
  [seed-tls]="seed TLS: HAProxy tcp send-proxy-v2 → nginx proxy_protocol ssl"
  [labgate-private-tls]="labgate private TLS (gateway.private.https)"
  [labgate-public-tls]="labgate public TLS: HAProxy tcp send-proxy-v2 → gateway.public.https"
)

# Results per path id.
# Results per path id: one value per round, space-separated (the report
# shows medians); R_PROCS the proxy process names, R_CPUP[id/name] their CPU.
declare -A R_RPS=() R_P50=() R_P99=() R_CPU=() R_BCPU=() R_PROCS=() R_CPUP=() R_NOTE=() R_FAILED=()

# ---------------------------------------------------------------- peers ----

# make_certs: a small CA and an ECDSA P-256 certificate for $APP_HOST signed
# by it, for the nginx and Caddy TLS paths.
make_certs() {
  local d=$TMP/pki
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$d/ca.key" -out "$d/ca.crt" -days 2 -subj "/CN=labgate bench CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$d/app.key" -out "$d/app.csr" -subj "/CN=$APP_HOST" 2>/dev/null
  printf 'subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    "$APP_HOST" >"$d/app.ext"
  openssl x509 -req -in "$d/app.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -out "$d/app.crt" -days 2 -extfile "$d/app.ext" 2>/dev/null
  PEER_CA=$d/ca.crt
}

# nginx_start NAME PORT MODE: nginx on PORT proxying to the backend with a
# keep-alive upstream pool. MODE: plain | tls | pp (expects a PROXY header) |
# pp-tls. With TLS, only SNI $APP_HOST gets a certificate (like labgate).
nginx_start() {
  local name=$1 port=$2 mode=$3 d=$TMP/$1 listen tls="" reject=""
  mkdir -p "$d"
  listen="127.0.0.1:$port"
  case $mode in
    tls | pp-tls) listen+=" ssl" ;;
  esac
  case $mode in
    pp | pp-tls) listen+=" proxy_protocol" ;;
  esac
  if [[ $mode == *tls ]]; then
    tls="ssl_certificate $TMP/pki/app.crt;
    ssl_certificate_key $TMP/pki/app.key;
    ssl_protocols TLSv1.2 TLSv1.3;"
    reject="server { listen $listen default_server; ssl_reject_handshake on; }"
  fi
  cat >"$d/nginx.conf" <<EOF
daemon off;
worker_processes auto;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $d/client_body;
  proxy_temp_path $d/proxy;
  fastcgi_temp_path $d/fastcgi;
  uwsgi_temp_path $d/uwsgi;
  scgi_temp_path $d/scgi;
  upstream backend {
    server 127.0.0.1:$BACKEND_PORT;
    keepalive 128;
  }
  $reject
  server {
    listen $listen;
    server_name $APP_HOST;
    $tls
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
    }
  }
}
EOF
  start_server "$name" nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log"
  wait_port "$port" "$STARTED_PID"
}

# haproxy_http_start NAME PORT: HAProxy mode http in front of the backend.
# haproxy_tcp_start NAME PORT TARGET_PORT: HAProxy mode tcp relaying to
# TARGET_PORT with a PROXY v2 header (the seed's relay).
haproxy_conf() { # haproxy_conf FILE MODE: global and defaults sections
  cat >"$1" <<EOF
global
  maxconn 4096
defaults
  mode $2
  timeout connect 5s
  timeout client 60s
  timeout server 60s
EOF
}
haproxy_http_start() {
  local name=$1 port=$2 d=$TMP/$1
  mkdir -p "$d"
  haproxy_conf "$d/haproxy.cfg" http
  cat >>"$d/haproxy.cfg" <<EOF
frontend fe
  bind 127.0.0.1:$port
  default_backend be
backend be
  server backend 127.0.0.1:$BACKEND_PORT
EOF
  start_server "$name" haproxy -db -f "$d/haproxy.cfg"
  wait_port "$port" "$STARTED_PID"
}
haproxy_tcp_start() {
  local name=$1 port=$2 target=$3 d=$TMP/$1
  mkdir -p "$d"
  haproxy_conf "$d/haproxy.cfg" tcp
  cat >>"$d/haproxy.cfg" <<EOF
frontend fe
  bind 127.0.0.1:$port
  default_backend be
backend be
  server target 127.0.0.1:$target send-proxy-v2
EOF
  start_server "$name" haproxy -db -f "$d/haproxy.cfg"
  wait_port "$port" "$STARTED_PID"
}

# caddy_start NAME PORT plain|tls: Caddy reverse_proxy with its defaults;
# admin API and automatic HTTPS off, state in the temp dir.
caddy_start() {
  local name=$1 port=$2 mode=$3 d=$TMP/$1 site
  mkdir -p "$d"
  if [[ $mode == tls ]]; then
    site="https://$APP_HOST:$port {
	tls $TMP/pki/app.crt $TMP/pki/app.key"
  else
    site="http://:$port {"
  fi
  cat >"$d/Caddyfile" <<EOF
{
	admin off
	auto_https off
	storage file_system $d/data
}
$site
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:$BACKEND_PORT
}
EOF
  start_server "$name" env HOME="$d" XDG_DATA_HOME="$d/data" XDG_CONFIG_HOME="$d/config" \
    caddy run --config "$d/Caddyfile" --adapter caddyfile
  wait_port "$port" "$STARTED_PID"
}

# ---------------------------------------------------------------- paths ----
# Each path_* starts its servers and calls measure with the URL wrk loads, the
# CA to verify the certificate with (TLS) and name=pid for each proxy process.
# They return non-zero when a server did not start.

url() { echo "$1://$APP_HOST:$2/"; } # url http|https PORT

path_direct() {
  measure direct "$(url http "$BACKEND_PORT")" ""
}
path_nginx() {
  local p; free_port p
  nginx_start nginx "$p" plain || return 1
  measure nginx "$(url http "$p")" "" "nginx=$STARTED_PID"
}
path_nginx-tls() {
  local p; free_port p
  nginx_start nginx-tls "$p" tls || return 1
  measure nginx-tls "$(url https "$p")" "$PEER_CA" "nginx=$STARTED_PID"
}
path_haproxy() {
  local p; free_port p
  haproxy_http_start haproxy "$p" || return 1
  measure haproxy "$(url http "$p")" "" "haproxy=$STARTED_PID"
}
path_caddy() {
  local p; free_port p
  caddy_start caddy "$p" plain || return 1
  measure caddy "$(url http "$p")" "" "caddy=$STARTED_PID"
}
path_caddy-tls() {
  local p; free_port p
  caddy_start caddy-tls "$p" tls || return 1
  measure caddy-tls "$(url https "$p")" "$PEER_CA" "caddy=$STARTED_PID"
}
seed() { # seed ID plain|tls: HAProxy mode tcp send-proxy-v2 → nginx proxy_protocol
  local id=$1 mode=pp ca="" scheme=http np hp npid
  [[ $2 == tls ]] && mode=pp-tls ca=$PEER_CA scheme=https
  free_port np; free_port hp
  nginx_start "$id-nginx" "$np" "$mode" || return 1
  npid=$STARTED_PID
  haproxy_tcp_start "$id-haproxy" "$hp" "$np" || return 1
  measure "$id" "$(url "$scheme" "$hp")" "$ca" "haproxy=$STARTED_PID" "nginx=$npid"
}
path_seed() { seed seed plain; }
path_seed-tls() { seed seed-tls tls; }

# labgate ID private|public plain|tls
labgate_path() {
  local id=$1 class=$2 mode=$3 scheme=http port
  if [[ $LABGATE_BUILT != 1 ]]; then
    log "labgate did not build"
    return 1
  fi
  start_labgate "$LABGATE_CONFIG" || return 1
  local lpid=$LABGATE_PID
  [[ $mode == tls ]] && scheme=https
  if [[ $class == private ]]; then
    port=$LG_PRIV_HTTP
    [[ $mode == tls ]] && port=$LG_PRIV_HTTPS
    measure "$id" "$(url "$scheme" "$port")" "$TMP/state/ca/root.crt" "labgate=$lpid"
  else
    local target=$LG_PUB_HTTP
    [[ $mode == tls ]] && target=$LG_PUB_HTTPS
    free_port port
    haproxy_tcp_start "$id-haproxy" "$port" "$target" || return 1
    measure "$id" "$(url "$scheme" "$port")" "$TMP/state/ca/root.crt" \
      "haproxy=$STARTED_PID" "labgate=$lpid"
  fi
}
path_labgate-private() { labgate_path labgate-private private plain; }
path_labgate-private-tls() { labgate_path labgate-private-tls private tls; }
path_labgate-public() { labgate_path labgate-public public plain; }
path_labgate-public-tls() { labgate_path labgate-public-tls public tls; }

# ------------------------------------------------------------- measuring ---

# parse_wrk FILE: sets W_REQS (requests in the run), W_RPS, W_P50, W_P99 (ms),
# W_NON2XX and W_SOCKERR (connect+read+write errors and timeouts).
parse_wrk() {
  read -r W_REQS W_RPS W_P50 W_P99 W_NON2XX W_SOCKERR < <(awk '
    function ms(v) {
      if (v ~ /us$/) return v / 1000
      if (v ~ /ms$/) return v + 0
      if (v ~ /m$/) return v * 60000
      if (v ~ /s$/) return v * 1000
      return v
    }
    / requests in / { reqs = $1 }
    /^Requests\/sec:/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx or 3xx responses:/ { non2xx = $NF }
    /Socket errors:/ { gsub(",", ""); sock = $4 + $6 + $8 + $10 }
    END { printf "%d %.0f %.3f %.3f %d %d\n", reqs, rps, p50, p99, non2xx, sock }' "$1")
}

# us_per_req TICKS REQUESTS: CPU ticks → µs per request, one decimal.
us_per_req() {
  awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", n ? t / hz * 1e6 / n : 0 }'
}

# measure ID URL CA [NAME=PID...]: checks the path with curl, warms up, then
# runs wrk while reading the CPU time of each proxy process and the backend.
measure() {
  local id=$1 url=$2 ca=$3
  shift 3
  local procs=("$@") p name pid i
  check_get "$url" "$ca" || return 1
  log "  warm-up ${WARMUP}s, then ${DURATION}s: $url"
  run_wrk "$url" "$WARMUP" "$TMP/$id.warmup.txt" || true

  local -a before=() after=()
  local bbefore bafter
  for p in "${procs[@]}"; do before+=("$(session_ticks "${p#*=}")"); done
  bbefore=$(session_ticks "$BACKEND_PID")
  if ! run_wrk "$url" "$DURATION" "$TMP/$id.wrk.txt"; then
    log "wrk failed:"; cat "$TMP/$id.wrk.txt" >&2
    return 1
  fi
  bafter=$(session_ticks "$BACKEND_PID")
  for p in "${procs[@]}"; do after+=("$(session_ticks "${p#*=}")"); done

  parse_wrk "$TMP/$id.wrk.txt"
  if ((W_REQS == 0)); then
    log "no requests completed:"; cat "$TMP/$id.wrk.txt" >&2
    return 1
  fi
  # Each R_* entry collects one value per round (space-separated).
  R_RPS[$id]+=" $W_RPS" R_P50[$id]+=" $W_P50" R_P99[$id]+=" $W_P99"
  R_BCPU[$id]+=" $(us_per_req $((bafter - bbefore)) "$W_REQS")"

  # Proxy CPU: the sum, and each process when there are several.
  local total=0 cpu
  R_PROCS[$id]=""
  for i in "${!procs[@]}"; do
    name=${procs[$i]%%=*}
    total=$((total + after[i] - before[i]))
    R_PROCS[$id]+=" $name"
    R_CPUP[$id/$name]+=" $(us_per_req $((after[i] - before[i])) "$W_REQS")"
  done
  cpu=–
  if ((${#procs[@]} > 0)); then
    cpu=$(us_per_req "$total" "$W_REQS")
    R_CPU[$id]+=" $cpu"
  fi

  ((W_NON2XX > 0)) && R_NOTE[$id]+="$W_NON2XX non-2xx; "
  ((W_SOCKERR > 0)) && R_NOTE[$id]+="$W_SOCKERR socket errors; "
  log "  $W_RPS req/s, p50 ${W_P50} ms, p99 ${W_P99} ms, proxy CPU $cpu µs/req"
}

# run_path ID: runs one path, then stops its servers (all but the backend).
run_path() {
  local id=$1 pid
  log "== $id: ${LABEL[$id]}"
  if ! "path_$id"; then
    R_FAILED[$id]=1
    log "   $id FAILED"
  fi
  for pid in "${SERVER_PIDS[@]}"; do
    [[ $pid == "$BACKEND_PID" ]] || stop_server "$pid"
  done
}

# -------------------------------------------------------------- report -----

ratio() { # ratio A B: A/B with two decimals, "–" when either is missing
  awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a == "" || b == "" || b == 0) print "–"; else printf "%.2f", a / b }'
}

median() { # median VALUES...: the median (mean of the middle two for an even count)
  (($# > 0)) || { echo ""; return; }
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    print m }'
}

# cpu_cell ID: the median proxy CPU, with each process's median for
# HAProxy-fronted paths.
cpu_cell() {
  local id=$1 name cell parts=()
  # shellcheck disable=SC2086 # word splitting of the value lists is intended
  cell=$(median ${R_CPU[$id]:-})
  [[ -n $cell ]] || { echo "–"; return; }
  printf -v cell '%.1f' "$cell"
  local -a names
  read -r -a names <<<"${R_PROCS[$id]}"
  if ((${#names[@]} > 1)); then
    for name in "${names[@]}"; do
      # shellcheck disable=SC2086
      parts+=("$(printf '%s %.1f' "$name" "$(median ${R_CPUP[$id/$name]})")")
    done
    cell+=" ($(printf '%s + ' "${parts[@]}" | sed 's/ + $//'))"
  fi
  echo "$cell"
}

# report: the markdown table (and the settings it was measured with).
report() {
  local id caddy rps direct_rps caddy_rps
  echo "## HTTP proxy benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "\`bench/http.sh\`: wrk -t${THREADS:-2} -c${CONNS:-64} -d${DURATION}s --latency (after a ${WARMUP}s warm-up), 1 KiB bodies, keep-alive, loopback; medians of $ROUNDS round(s), paths interleaved."
  echo "Machine: $(nproc) cores, $(uname -sr). labgate $(git -C "$REPO_DIR" describe --always --dirty 2>/dev/null || echo '?'), $(go version | awk '{print $3}'), LABGATE_GOMAXPROCS=${LABGATE_GOMAXPROCS:-unset}."
  echo "Load average when the run started: $LOAD_AT_START (anything well above 0 means other work shared the cores)."
  echo "Peers: $(nginx -v 2>&1 | sed 's/.*: //'), HAProxy $(haproxy -v | awk 'NR==1 {print $3}'), Caddy $(caddy version | awk '{print $1}'), $(wrk -v 2>&1 | awk 'NR==1 {print $1, $2}')."
  echo
  echo "× direct: req/s relative to the backend alone. × Caddy: relative to Caddy of the same kind (plain or TLS)."
  echo "Proxy CPU: user+system time of the proxy's processes per request (µs); HAProxy-fronted paths show the sum (each process)."
  echo "Backend CPU: the same for the backend (should be about equal on all paths)."
  echo
  echo "| path | req/s | × direct | × Caddy | p50 ms | p99 ms | proxy CPU µs/req | backend CPU µs/req | notes |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
  # shellcheck disable=SC2086 # word splitting of the value lists is intended
  direct_rps=$(median ${R_RPS[direct]:-})
  for id in "${SELECTED[@]}"; do
    if [[ -n ${R_FAILED[$id]:-} ]]; then
      echo "| ${LABEL[$id]} | failed | | | | | | | see the log |"
      continue
    fi
    caddy=caddy
    [[ $id == *tls ]] && caddy="caddy-tls"
    # shellcheck disable=SC2086
    {
      rps=$(median ${R_RPS[$id]})
      caddy_rps=$(median ${R_RPS[$caddy]:-})
      printf '| %s | %.0f | %s | %s | %.2f | %.2f | %s | %.1f | %s |\n' "${LABEL[$id]}" "$rps" \
        "$(ratio "$rps" "$direct_rps")" "$(ratio "$rps" "$caddy_rps")" \
        "$(median ${R_P50[$id]})" "$(median ${R_P99[$id]})" "$(cpu_cell "$id")" \
        "$(median ${R_BCPU[$id]})" "${R_NOTE[$id]:-}"
    }
  done
}

main() {
  need go wrk curl openssl ss nginx haproxy caddy
  select_paths "$@"

  LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
  make_tmp
  build_bins
  make_certs

  free_port BACKEND_PORT
  start_server backend "$TMP/backend" -addr "127.0.0.1:$BACKEND_PORT"
  BACKEND_PID=$STARTED_PID
  wait_port "$BACKEND_PORT" "$BACKEND_PID" || exit 1

  labgate_ports
  LABGATE_CONFIG=$TMP/labgate.yaml
  write_labgate_config "$LABGATE_CONFIG" "$BACKEND_PORT" 0

  run_rounds
  finish_report http
}

main "$@"
