#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind.
#
#   benches/load/callgrind.sh [acme|routes1000] [GWCORE_BINARY]
#
# Serves the scenario of run.sh (the same generated manifests) with
# `gwcore serve --threads 1` under valgrind, in front of an nginx backend
# answering "ok"; sends a warm-up, zeroes the counters, sends CLIENTS
# keep-alive curl processes of PER requests each, dumps, and prints the
# instructions per request and the top inclusive costs. Unlike req/s on a
# shared machine, the count does not move with other people's load; the
# kernel's share of a request is not counted. Environment: PER (default
# 400), CLIENTS (default 8), KEEP=1 keeps the profile and configs,
# EXTRA=FILE appends FILE's documents to the scenario (a policy or a
# filter to measure; `${BACKEND_PORT}` in it is the nginx backend's port,
# and the Service `bench/backend` is that backend), SERVE_FLAGS="..." adds
# flags to `gwcore serve` (e.g. `--otlp-endpoint http://127.0.0.1:4317`,
# to measure tracing), ACCESS_LOG=1 turns gwcore's access log on
# (RUST_LOG=info, as `gwcore serve` runs by default, standard error to a
# file; default: RUST_LOG=warn, no access log): its writer thread's
# instructions are counted with the requests', and the lines written are
# checked to be one per request.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SCENARIO=${1:-acme}
GWCORE=${2:-}
PER=${PER:-400}
CLIENTS=${CLIENTS:-8}
BACKEND_PORT=${BACKEND_PORT:-19200}
PROXY_PORT=${PROXY_PORT:-18280}
# shellcheck source=../lib.sh
. "$ROOT/benches/lib.sh"
work_dir gwcore-callgrind

for tool in valgrind callgrind_control callgrind_annotate nginx curl; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install valgrind nginx-light curl)" >&2; exit 1; }
done
if [ -z "$GWCORE" ]; then
  cargo build --release -q -p gwcore-cli
  GWCORE=${CARGO_TARGET_DIR:-$ROOT/target}/release/gwcore
fi

# The scenario generators of run.sh, without running it.
eval "$(sed -n '/^# --- scenario generation/,/^# --- measuring/p' benches/load/run.sh)"

gwcore_manifests "$SCENARIO" >"$WORK/gw.yaml"
if [ -n "${EXTRA:-}" ]; then
  printf -- '---\n' >>"$WORK/gw.yaml"
  sed "s/\${BACKEND_PORT}/$BACKEND_PORT/g" "$EXTRA" >>"$WORK/gw.yaml"
fi
nginx_conf backend >"$WORK/backend.conf"
nginx -c "$WORK/backend.conf" >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$BACKEND_PORT"

LOG_LEVEL=warn
[ "${ACCESS_LOG:-}" = 1 ] && LOG_LEVEL=info
RUST_LOG=$LOG_LEVEL valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" \
  "$GWCORE" serve "$WORK/gw.yaml" --listen "80=127.0.0.1:$PROXY_PORT" --threads 1 ${SERVE_FLAGS:-} >"$WORK/gwcore.log" 2>&1 &
VG=$!
PIDS+=($VG)
wait_port "$PROXY_PORT" 1200 # valgrind starts slowly

URL="http://127.0.0.1:$PROXY_PORT$(request_url "$SCENARIO" | sed 's#^http://[^/]*##')"
HOST=$(request_host "$SCENARIO")
URLS=$(for _ in $(seq 1 "$PER"); do printf '%s ' "$URL"; done)
send() { # CLIENTS curl processes, PER requests each on one keep-alive connection
  local clients=()
  for _ in $(seq 1 "$CLIENTS"); do
    # shellcheck disable=SC2086
    curl -s -o /dev/null -w '%{http_code}\n' -H "Host: $HOST" $URLS &
    clients+=($!)
  done
  wait "${clients[@]}"
}
send >/dev/null
callgrind_control -z "$VG" >/dev/null 2>&1
# Only the first URL's body goes to -o; the others' bodies ("ok") are
# printed too, so only the status lines are counted.
CODES=$(send | grep -E '^[0-9]{3}$' | sort | uniq -c | tr -s ' \n' ' ')
# The access log's writer writes within its interval (200 ms): let it, so
# that writing the lines is in the count.
[ "${ACCESS_LOG:-}" = 1 ] && sleep 1
callgrind_control -d "$VG" >/dev/null 2>&1
kill "$VG"; wait "$VG" 2>/dev/null || true
N=$((PER * CLIENTS))
if [ "${ACCESS_LOG:-}" = 1 ]; then
  # Every request of the warm-up and of the measured run has its line, all
  # written by the time gwcore stops.
  LINES=$(grep -c ' gwcore::access: .* status=200 ' "$WORK/gwcore.log" || true)
  echo "access log: $LINES lines for $((2 * N)) requests (warm-up included)"
  [ "$LINES" = $((2 * N)) ] || { echo "access log lines missing: $WORK/gwcore.log" >&2; exit 1; }
fi
PROFILE=$(ls -t "$WORK"/callgrind.out.* | head -1)
IR=$(callgrind_annotate "$PROFILE" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
echo "$SCENARIO: $N requests (status counts:$CODES), $IR instructions, $((IR / N)) per request"
[ "$CODES" = " $N 200 " ] || { echo "not every request was answered 200" >&2; exit 1; }
echo
echo "top inclusive costs, instructions per request:"
callgrind_annotate --inclusive=yes "$PROFILE" 2>/dev/null |
  awk -v n="$N" '/^ *[0-9,]+ +\( *[0-9.]+%\)/ {
      v = $1; gsub(",", "", v)
      sub(/^ *[0-9,]+ +\( *[0-9.]+%\) +/, "")
      gsub(/[^ ]*\/\.cargo\/registry\/src\/[^\/]+\/|\/rustc\/[0-9a-f]+\//, "")
      printf "%8d %s\n", v / n, substr($0, 1, 150) }' |
  sed -n '1,60p'
