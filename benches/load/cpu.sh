#!/usr/bin/env bash
# CPU time (user + system, from /proc) the proxy spends per request, with
# and without a policy or filter: the companion of callgrind.sh, which
# counts user-space instructions only.
#
#   benches/load/cpu.sh [acme|routes1000] [GWCORE_BINARY]
#
# The same scenario and clients as callgrind.sh (CLIENTS keep-alive curl
# processes of PER requests each, in front of an nginx backend answering
# "ok"), without valgrind: gwcore serves with --threads 1 pinned to core
# PROXY_CPU (default 1), the clients and nginx run on CLIENT_CPU (default
# 0). Prints the proxy's CPU microseconds per request, the median of RUNS
# (default 5) runs. EXTRA=FILE adds documents to the scenario as in
# callgrind.sh. /proc counts in clock ticks (10 ms): the default 16 000
# requests a run take several hundred ticks.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SCENARIO=${1:-acme}
GWCORE=${2:-}
PER=${PER:-2000}
CLIENTS=${CLIENTS:-8}
RUNS=${RUNS:-5}
PROXY_CPU=${PROXY_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
BACKEND_PORT=${BACKEND_PORT:-19210}
PROXY_PORT=${PROXY_PORT:-18290}
# shellcheck source=../lib.sh
. "$ROOT/benches/lib.sh"
work_dir gwcore-cpu

for tool in nginx curl taskset; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install nginx-light curl util-linux)" >&2; exit 1; }
done
if [ -z "$GWCORE" ]; then
  cargo build --release -q -p gwcore-cli
  GWCORE=${CARGO_TARGET_DIR:-$ROOT/target}/release/gwcore
fi

eval "$(sed -n '/^# --- scenario generation/,/^# --- measuring/p' benches/load/run.sh)"

gwcore_manifests "$SCENARIO" >"$WORK/gw.yaml"
if [ -n "${EXTRA:-}" ]; then
  printf -- '---\n' >>"$WORK/gw.yaml"
  sed "s/\${BACKEND_PORT}/$BACKEND_PORT/g" "$EXTRA" >>"$WORK/gw.yaml"
fi
nginx_conf backend >"$WORK/backend.conf"
taskset -c "$CLIENT_CPU" nginx -c "$WORK/backend.conf" >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$BACKEND_PORT"

RUST_LOG=warn taskset -c "$PROXY_CPU" "$GWCORE" serve "$WORK/gw.yaml" \
  --listen "80=127.0.0.1:$PROXY_PORT" --threads 1 >"$WORK/gwcore.log" 2>&1 &
GW=$!
PIDS+=($GW)
wait_port "$PROXY_PORT"

URL="http://127.0.0.1:$PROXY_PORT$(request_url "$SCENARIO" | sed 's#^http://[^/]*##')"
HOST=$(request_host "$SCENARIO")
URLS=$(for _ in $(seq 1 "$PER"); do printf '%s ' "$URL"; done)
send() {
  local clients=()
  for _ in $(seq 1 "$CLIENTS"); do
    # shellcheck disable=SC2086
    taskset -c "$CLIENT_CPU" curl -s -o /dev/null -w '%{http_code}\n' -H "Host: $HOST" $URLS &
    clients+=($!)
  done
  wait "${clients[@]}"
}
ticks() { awk '{ print $14 + $15 }' "/proc/$GW/stat"; }
HZ=$(getconf CLK_TCK)
N=$((PER * CLIENTS))
send >/dev/null # warm-up
results=()
for _ in $(seq 1 "$RUNS"); do
  before=$(ticks)
  CODES=$(send | grep -E '^[0-9]{3}$' | sort | uniq -c | tr -s ' \n' ' ')
  after=$(ticks)
  [ "$CODES" = " $N 200 " ] || { echo "not every request was answered 200:$CODES" >&2; exit 1; }
  results+=("$(awk -v t=$((after - before)) -v hz="$HZ" -v n="$N" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')")
done
median=$(printf '%s\n' "${results[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
echo "$SCENARIO${EXTRA:+ + $(basename "$EXTRA")}: $N requests a run, proxy CPU us/request: median $median (runs: ${results[*]})"
