#!/usr/bin/env bash
# Soak: `gwcore serve` on the ACME example under steady load while its
# configuration is rewritten every few seconds. Passes when no request
# failed, every reload was applied (and its new route served), and the
# proxy's RSS did not grow.
#
#   benches/soak/run.sh                    # 600 s, a reload every 5 s
#   SOAK_SECONDS=60 RELOAD_EVERY=2 benches/soak/run.sh
#
# Environment (defaults in brackets):
#   SOAK_SECONDS [600]      how long the load runs
#   RELOAD_EVERY [5]        seconds between configuration rewrites
#   RSS_EVERY [10]          seconds between RSS samples of the proxy
#   RSS_MAX_GROWTH_KIB [4096]  allowed RSS growth from the first sample
#                           to the last, both taken under load
#   CONNECTIONS [16]        wrk connections
#   PROXY_CPU [1], CLIENT_CPU [1]  cores for the proxy and for wrk (one
#                           core by default: the machine is shared)
#   PORT [18090], ADMIN_PORT [18091]
#   GWCORE                  a built binary (default: builds
#                           target/release/gwcore)
#   KEEP=1                  keep the work directory (proxy log, wrk
#                           output, RSS samples, reload timings)
#
# What happens:
# 1. examples/acme is copied to a temporary folder, plus extra.yaml; the
#    proxy serves the copy with --echo-backends (an echo backend per
#    Service) and --admin.
# 2. wrk requests /careers/... and /product/... in turn (Host
#    acme.example); a Lua hook counts answers outside 2xx.
# 3. Every RELOAD_EVERY seconds extra.yaml is replaced (written aside,
#    renamed over) by a different harmless change: an HTTPRoute
#    `soak-extra` in namespace product with path /soak-<n> and annotation
#    soak/iteration=<n>; every fourth time the file holds only a ConfigMap,
#    so the route disappears and comes back. A reload counts once
#    gwcore_config_generation on /metrics has moved past the previous
#    value; then /soak-<n> must answer 200 (or 404 when the route is
#    absent). A reload not seen within 10 s is an error.
# 4. Every RSS_EVERY seconds the proxy's RSS is sampled (ps).
# 5. The summary: requests, non-2xx, socket errors, reloads applied/failed,
#    route checks failed, RSS first/last/max. Exit 1 on any error or on RSS
#    growth over RSS_MAX_GROWTH_KIB.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SOAK_SECONDS=${SOAK_SECONDS:-600}
RELOAD_EVERY=${RELOAD_EVERY:-5}
RSS_EVERY=${RSS_EVERY:-10}
RSS_MAX_GROWTH_KIB=${RSS_MAX_GROWTH_KIB:-4096}
CONNECTIONS=${CONNECTIONS:-16}
PROXY_CPU=${PROXY_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${PORT:-18090}
ADMIN_PORT=${ADMIN_PORT:-18091}
# shellcheck source=../lib.sh
. "$ROOT/benches/lib.sh"
work_dir gwcore-soak

if ! command -v wrk >/dev/null; then
  echo "installing wrk" >&2
  (apt-get install -y wrk >/dev/null 2>&1) || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
if [ -z "${GWCORE:-}" ]; then
  cargo build --release -q -p gwcore-cli
  GWCORE=$ROOT/target/release/gwcore
fi

generation() {
  curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '$1 == "gwcore_config_generation" { print $2 }'
}

reloads() { # reloads RESULT
  curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" |
    awk -v r="gwcore_reloads_total{result=\"$1\"}" '$1 == r { print $2 }'
}

write_extra() { # write_extra N: the Nth harmless change, renamed into place
  local n=$1 f="$WORK/conf/extra.yaml"
  if [ $((n % 4)) -eq 3 ]; then
    cat >"$f.tmp" <<YAML
apiVersion: v1
kind: ConfigMap
metadata: {name: soak, namespace: product, annotations: {soak/iteration: "$n"}}
data: {iteration: "$n"}
YAML
  else
    cat >"$f.tmp" <<YAML
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: soak-extra
  namespace: product
  annotations: {soak/iteration: "$n"}
spec:
  parentRefs: [{name: shared-gateway, namespace: infra-ns}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /soak-$n}}]
    backendRefs: [{name: product, port: 9080}]
YAML
  fi
  mv "$f.tmp" "$f"
}

mkdir -p "$WORK/conf"
cp examples/acme/*.yaml "$WORK/conf/"
write_extra 0

# The access log (gwcore::access) is off: at this rate it writes ~10 MB/s.
taskset -c "$PROXY_CPU" env RUST_LOG=info,gwcore::access=off "$GWCORE" serve "$WORK/conf" \
  --controller-name example.com/gateway-controller --echo-backends \
  --listen "80=127.0.0.1:$PORT" --admin "127.0.0.1:$ADMIN_PORT" --threads 1 \
  >"$WORK/gwcore.log" 2>&1 &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
wait_port "$PORT"
wait_port "$ADMIN_PORT"
for p in /careers/x /product/x /soak-0; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: acme.example' "http://127.0.0.1:$PORT$p")
  [ "$code" = 200 ] || { echo "$p answered $code before the soak, not 200" >&2; exit 1; }
done

cat >"$WORK/paths.lua" <<'LUA'
-- /careers and /product in turn; counts answers outside 2xx per thread.
local threads = {}
function setup(thread) table.insert(threads, thread) end
local i = 0
bad = 0 -- global: done() reads it with thread:get
function request()
  i = i + 1
  if i % 2 == 0 then
    return wrk.format("GET", "/careers/jobs/" .. i)
  end
  return wrk.format("GET", "/product/items/" .. i)
end
function response(status, headers, body)
  if status < 200 or status > 299 then bad = bad + 1 end
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("bad") end
  io.write(string.format("non2xx %d\n", n))
end
LUA

taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"${SOAK_SECONDS}s" --timeout 5s \
  -H 'Host: acme.example' -s "$WORK/paths.lua" "http://127.0.0.1:$PORT/" >"$WORK/wrk.out" 2>&1 &
WRK_PID=$!
PIDS+=("$WRK_PID")

: >"$WORK/rss"
: >"$WORK/reloads"
start=$(date +%s)
next_reload=$((start + RELOAD_EVERY))
next_rss=$((start + RSS_EVERY))
n=0
gen=$(generation)
errors=0
route_failures=0
while kill -0 "$WRK_PID" 2>/dev/null; do
  now=$(date +%s)
  # Samples stop 2 s before the end, while every connection is still open.
  if [ "$now" -ge "$next_rss" ] && [ "$now" -lt $((start + SOAK_SECONDS - 2)) ]; then
    echo "$((now - start)) $(ps -o rss= -p "$PROXY_PID" | tr -d ' ')" >>"$WORK/rss"
    next_rss=$((next_rss + RSS_EVERY))
  fi
  # A reload must be seen before the load ends (10 s at most).
  if [ "$now" -ge "$next_reload" ] && [ "$now" -lt $((start + SOAK_SECONDS - 10)) ]; then
    n=$((n + 1))
    write_extra "$n"
    t0=$(date +%s.%N)
    seen=""
    for _ in $(seq 1 100); do
      g=$(generation)
      if [ -n "$g" ] && [ "$g" -gt "$gen" ]; then seen=$g; break; fi
      sleep 0.1
    done
    if [ -z "$seen" ]; then
      echo "reload $n: generation stayed at $gen for 10 s" >&2
      errors=$((errors + 1))
    else
      gen=$seen
      want=200
      [ $((n % 4)) -eq 3 ] && want=404
      code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: acme.example' "http://127.0.0.1:$PORT/soak-$n/x")
      if [ "$code" != "$want" ]; then
        echo "reload $n (generation $gen): /soak-$n answered $code, not $want" >&2
        route_failures=$((route_failures + 1))
      fi
      echo "$n $gen $(echo "$(date +%s.%N) - $t0" | bc)" >>"$WORK/reloads"
    fi
    next_reload=$((next_reload + RELOAD_EVERY))
  fi
  sleep 0.2
done
wait "$WRK_PID" || { echo "wrk failed:" >&2; cat "$WORK/wrk.out" >&2; exit 1; }
# Once the load stopped (connections closed): reported, not judged.
rss_after=$(ps -o rss= -p "$PROXY_PID" | tr -d ' ')

requests=$(awk '/requests in/ { print $1 }' "$WORK/wrk.out")
non2xx=$(awk '$1 == "non2xx" { print $2 }' "$WORK/wrk.out")
socket=$(awk '/Socket errors/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$WORK/wrk.out")
socket=${socket:-0}
rps=$(awk '/Requests\/sec/ { print $2 }' "$WORK/wrk.out")
applied=$(reloads applied)
failed=$(reloads failed)
rss_first=$(awk 'NR == 1 { print $2 }' "$WORK/rss")
rss_last=$(awk 'END { print $2 }' "$WORK/rss")
rss_max=$(awk '$2 > m { m = $2 } END { print m }' "$WORK/rss")
logged=$(grep -c 'configuration applied' "$WORK/gwcore.log" || true)
warnings=$(grep -cE ' (WARN|ERROR) ' "$WORK/gwcore.log" || true)
apply_ms=$(awk '{ s += $3; if ($3 > m) m = $3 } END { if (NR) printf "%.0f/%.0f", 1000 * s / NR, 1000 * m }' "$WORK/reloads")

echo
echo "soak: ${SOAK_SECONDS}s, $CONNECTIONS connections, reload every ${RELOAD_EVERY}s (proxy on CPU $PROXY_CPU, wrk on CPU $CLIENT_CPU)"
echo "requests served        $requests ($rps req/s)"
echo "non-2xx answers        $non2xx"
echo "socket errors          $socket"
echo "rewrites               $n"
echo "reloads applied        $((applied - 1)) after the first load (generation $gen; refused $failed; not seen $errors; logged $logged)"
echo "log warnings/errors    $warnings"
echo "reload seen after ms   $apply_ms (mean/max)"
echo "new-route checks failed $route_failures"
echo "RSS KiB first/last/max $rss_first/$rss_last/$rss_max under load (growth $((rss_last - rss_first)), allowed $RSS_MAX_GROWTH_KIB); $rss_after after it"
echo "RSS samples (s KiB):   $(tr '\n' ' ' <"$WORK/rss")"

status=0
[ "${non2xx:-1}" = 0 ] || { echo "FAIL: non-2xx answers" >&2; status=1; }
[ "$socket" = 0 ] || { echo "FAIL: socket errors" >&2; status=1; }
[ "$errors" = 0 ] || { echo "FAIL: reloads not seen" >&2; status=1; }
[ "${failed:-1}" = 0 ] || { echo "FAIL: refused reloads" >&2; status=1; }
[ "$route_failures" = 0 ] || { echo "FAIL: reloaded routes not served" >&2; status=1; }
[ "$n" -gt 0 ] || { echo "FAIL: no reload happened (SOAK_SECONDS too short?)" >&2; status=1; }
[ $((rss_last - rss_first)) -le "$RSS_MAX_GROWTH_KIB" ] || { echo "FAIL: RSS grew by more than $RSS_MAX_GROWTH_KIB KiB" >&2; status=1; }
exit $status
