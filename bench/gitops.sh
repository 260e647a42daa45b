#!/usr/bin/env bash
# bench/gitops.sh: time from `git push` to the pushed change serving, with
# labgate following a git server on loopback.
#
# The forge is `git daemon` serving a bare repository (push enabled); its
# post-receive hook plays the forge's push webhook: it POSTs a GitHub-style
# push event, HMAC-SHA256 signed, to labgate's /hooks/git. Each run commits
# one more service (echo) and pushes it; the clock runs from just before
# `git push` until `curl` gets 200 from the new service through labgate. The
# same is done with the webhook off (interval 2s) for comparison.
#
# Knobs: RUNS (9), INTERVAL (2s, the no-webhook case), KEEP_TMP=1.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need go git curl openssl ss
RUNS=${RUNS:-9}
INTERVAL=${INTERVAL:-2s}

make_tmp
log "building labgate"
(cd "$REPO_DIR" && go build -o "$TMP/labgate" ./cmd/labgate) || die "build failed"

export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.org GIT_COMMITTER_NAME=bench \
  GIT_COMMITTER_EMAIL=bench@example.org GIT_CONFIG_NOSYSTEM=1 HOME=$TMP
SECRET=bench-webhook-secret

now_ms() { date +%s%3N; }

# setup MODE: a fresh forge, clone and labgate; MODE is webhook or interval.
setup() {
  local mode=$1
  rm -rf "$TMP/srv" "$TMP/work" "$TMP/state" "$TMP/local.yaml"
  mkdir -p "$TMP/srv"
  git init -q --bare -b main "$TMP/srv/lab.git"
  free_port GIT_PORT
  free_port HTTP_PORT
  free_port ADMIN_PORT
  if [[ $mode == webhook ]]; then
    cat >"$TMP/srv/lab.git/hooks/post-receive" <<HOOK
#!/usr/bin/env bash
while read -r old new ref; do
  body="{\"ref\":\"\$ref\",\"before\":\"\$old\",\"after\":\"\$new\"}"
  sig=\$(printf '%s' "\$body" | openssl dgst -sha256 -hmac '$SECRET' -r | cut -d' ' -f1)
  curl -s -o /dev/null -X POST -H 'X-GitHub-Event: push' -H "X-Hub-Signature-256: sha256=\$sig" \
    --data-binary "\$body" http://127.0.0.1:$ADMIN_PORT/hooks/git
done
HOOK
    chmod +x "$TMP/srv/lab.git/hooks/post-receive"
  fi
  start_server git-daemon git daemon --reuseaddr --base-path="$TMP/srv" --export-all --enable=receive-pack \
    --listen=127.0.0.1 --port="$GIT_PORT" "$TMP/srv"
  GIT_PID=$STARTED_PID
  wait_port "$GIT_PORT" "$GIT_PID" || die "git daemon did not start"

  git init -q -b main "$TMP/work"
  git -C "$TMP/work" remote add origin "git://127.0.0.1:$GIT_PORT/lab.git"
  SERVICES="  - { name: first, host: first.bench.localhost, echo: true, allow_http: true }"
  write_lab
  git -C "$TMP/work" add lab.yaml && git -C "$TMP/work" commit -qm first && git -C "$TMP/work" push -q origin main

  local hook=""
  if [[ $mode == webhook ]]; then
    hook="  webhook: { secret: $SECRET }"
    interval=1h
  else
    interval=$INTERVAL
  fi
  cat >"$TMP/local.yaml" <<YAML
version: 1
state_dir: $TMP/state
log: { level: warn }
git:
  url: git://127.0.0.1:$GIT_PORT/lab.git
  interval: $interval
$hook
YAML
  start_server labgate "$TMP/labgate" serve -c "$TMP/local.yaml"
  LABGATE_PID=$STARTED_PID
  wait_port "$HTTP_PORT" "$LABGATE_PID" || die "labgate did not start"
}

write_lab() {
  cat >"$TMP/work/lab.yaml" <<YAML
version: 1
domain: bench.localhost
log: { level: warn, access: false }
gateway:
  private:
    http: [127.0.0.1:$HTTP_PORT]
  admin: 127.0.0.1:$ADMIN_PORT
services:
$SERVICES
YAML
}

# one_run I: push service svc-I, print the milliseconds until it answers 200
# and, after a space, how many of them `git push` itself took.
one_run() {
  local i=$1 host="svc-$1.bench.localhost" t0 t1 code deadline
  SERVICES+=$'\n'"  - { name: svc-$i, host: $host, echo: true, allow_http: true }"
  write_lab
  git -C "$TMP/work" commit -qam "add svc-$i"
  t0=$(now_ms)
  git -C "$TMP/work" push -q origin main
  t1=$(now_ms)
  deadline=$((t0 + 30000))
  while :; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --resolve "$host:$HTTP_PORT:127.0.0.1" "http://$host:$HTTP_PORT/" || true)
    [[ $code == 200 ]] && break
    (($(now_ms) < deadline)) || die "svc-$i did not serve within 30 s"
    sleep 0.005
  done
  echo "$(($(now_ms) - t0)) $((t1 - t0))"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

declare -A RESULT
for mode in webhook interval; do
  setup "$mode"
  times=() pushes=()
  for ((i = 1; i <= RUNS; i++)); do
    read -r total push < <(one_run "$i")
    times+=("$total") pushes+=("$push")
  done
  RESULT[$mode]="median $(printf '%s\n' "${times[@]}" | median) ms (min $(printf '%s\n' "${times[@]}" | sort -n | head -1), max $(printf '%s\n' "${times[@]}" | sort -n | tail -1); runs: ${times[*]}) | $(printf '%s\n' "${pushes[@]}" | median) ms"
  log "$mode: ${RESULT[$mode]}"
  stop_server "$LABGATE_PID"
  stop_server "$GIT_PID"
done

printf '| trigger | push → 200 for the new service | of which `git push` itself |\n|---|---|---|\n'
printf '| webhook (post-receive → /hooks/git) | %s |\n' "${RESULT[webhook]}"
printf '| interval %s, no webhook | %s |\n' "$INTERVAL" "${RESULT[interval]}"
