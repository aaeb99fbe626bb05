#!/usr/bin/env bash
# Load benchmark: gwcore, nginx and haproxy proxying to the same loopback
# backend with equivalent routing, measured by wrk in one run.
#
#   benches/load/run.sh [acme|routes1000|all]   (default: all)
#
# Environment: DURATION (seconds per run, default 10), CONNECTIONS (default
# 64), ROUNDS (default 1: each proxy is measured this many times, the three
# taking turns, and the median of each figure is printed: on a machine
# shared with other work this keeps a burst of someone else's load from
# deciding a ratio), PROXY_CPU / CLIENT_CPU (cores to pin to, default 0 and
# 1), GWCORE (a built binary; default: builds target/release/gwcore),
# GWCORE_BASE (another gwcore binary, measured in the same rounds as
# "gwcore-base": a change's before and after under the same load).
#
# The proxy under test runs alone on PROXY_CPU with one worker (nginx
# worker_processes 1, haproxy nbthread 1, gwcore --threads 1); wrk and the
# backend (an nginx answering "ok") share CLIENT_CPU. No proxy writes an
# access log. Installs nginx, haproxy and wrk from Debian packages if they
# are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SCENARIOS=${1:-all}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-1}
PROXY_CPU=${PROXY_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
WORK=$(mktemp -d /tmp/gwcore-load.XXXXXX)
BACKEND_PORT=19000
PROXY_PORT=18080
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

need() {
  local missing=()
  for tool in nginx haproxy wrk; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  if [ ${#missing[@]} -gt 0 ]; then
    pkgs=()
    for t in "${missing[@]}"; do case $t in nginx) pkgs+=(nginx-light) ;; *) pkgs+=("$t") ;; esac; done
    echo "installing ${pkgs[*]}" >&2
    (apt-get install -y "${pkgs[@]}" >/dev/null 2>&1) || { apt-get update >/dev/null && apt-get install -y "${pkgs[@]}" >/dev/null; }
  fi
}

start() { # start CPU LOGFILE CMD... ; records the pid
  local cpu=$1 log=$2; shift 2
  taskset -c "$cpu" "$@" >"$log" 2>&1 &
  PIDS+=($!)
  LAST_PID=$!
}

stop_last() { kill "$LAST_PID" 2>/dev/null || true; wait "$LAST_PID" 2>/dev/null || true; }

wait_port() {
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $1 did not open" >&2; return 1
}

# --- scenario generation ------------------------------------------------
# Each scenario is a list of (host, path prefix) routes to the backend,
# written as Gateway API manifests (gwcore), nginx and haproxy configs.
# ACME: two prefixes on any host. routes1000: 1000 hosts h<i>.example, each
# with prefix /p<i>.
routes() {
  case $1 in
    acme) echo "* /careers"; echo "* /product" ;;
    routes1000) for i in $(seq 0 999); do echo "h$i.example /p$i"; done ;;
  esac
}

request_url() {
  case $1 in
    acme) echo "http://127.0.0.1:$PROXY_PORT/careers/jobs" ;;
    routes1000) echo "http://127.0.0.1:$PROXY_PORT/p500/x" ;;
  esac
}

request_host() {
  case $1 in acme) echo "acme.example" ;; routes1000) echo "h500.example" ;; esac
}

gwcore_manifests() {
  cat <<YAML
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: bench}
spec: {controllerName: gwcore.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: bench}
spec:
  gatewayClassName: bench
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: bench}
spec: {ports: [{port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: backend-1, namespace: bench, labels: {kubernetes.io/service-name: backend}}
addressType: IPv4
ports: [{port: $BACKEND_PORT}]
endpoints: [{addresses: [127.0.0.1]}]
YAML
  local i=0
  while read -r host path; do
    local hosts="[]"
    [ "$host" != "*" ] && hosts="[$host]"
    cat <<YAML
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r$i, namespace: bench}
spec:
  parentRefs: [{name: gw}]
  hostnames: $hosts
  rules:
  - matches: [{path: {type: PathPrefix, value: $path}}]
    backendRefs: [{name: backend, port: 80}]
YAML
    i=$((i + 1))
  done < <(routes "$1")
}

nginx_conf() { # nginx_conf SCENARIO|backend
  cat <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx-$1.pid;
error_log $WORK/nginx-$1-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server_names_hash_bucket_size 128;
  server_names_hash_max_size 4096;
CONF
  if [ "$1" = backend ]; then
    echo "  server { listen 127.0.0.1:$BACKEND_PORT; location / { return 200 \"ok\\n\"; } }"
  else
    echo "  upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 128; }"
    routes "$1" | awk '{print $1}' | sort -u | while read -r host; do
      if [ "$host" = "*" ]; then echo "  server { listen 127.0.0.1:$PROXY_PORT default_server;"; else echo "  server { listen 127.0.0.1:$PROXY_PORT; server_name $host;"; fi
      routes "$1" | awk -v h="$host" '$1 == h {print $2}' | while read -r path; do
        echo "    location = $path { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }"
        echo "    location $path/ { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }"
      done
      echo "    location / { return 404; }"
      echo "  }"
    done
    if ! routes "$1" | grep -q '^\*'; then
      echo "  server { listen 127.0.0.1:$PROXY_PORT default_server; location / { return 404; } }"
    fi
  fi
  echo "}"
}

haproxy_conf() {
  cat <<CONF
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:$PROXY_PORT
CONF
  local i=0
  while read -r host path; do
    local cond="{ path $path } || { path_beg $path/ }"
    if [ "$host" != "*" ]; then
      echo "  acl h$i hdr(host),field(1,:) -i $host"
      echo "  use_backend be if h$i { path $path } || h$i { path_beg $path/ }"
    else
      echo "  use_backend be if $cond"
    fi
    i=$((i + 1))
  done < <(routes "$1")
  cat <<CONF
  default_backend notfound
backend be
  server s1 127.0.0.1:$BACKEND_PORT maxconn 1000
backend notfound
  http-request return status 404
CONF
}

# --- measuring --------------------------------------------------------------
bench() { # bench NAME SCENARIO PID
  local name=$1 scenario=$2 pid=$3
  local url host out rss
  url=$(request_url "$scenario"); host=$(request_host "$scenario")
  # Warm up, check the route answers 200.
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $host" "$url")
  [ "$code" = 200 ] || { echo "$name: $url answered $code, not 200" >&2; return 1; }
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d1s -H "Host: $host" "$url" >/dev/null
  out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Host: $host" "$url")
  rss=$(ps -o rss= -p "$pid" | tr -d ' ')
  echo "$out" | awk -v name="$name" -v scenario="$scenario" -v rss="$rss" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /Requests\/sec/ { rps = $2 }
    / 50%/ { p50 = ms($2) }
    / 99%/ { p99 = ms($2) }
    /Non-2xx/ { bad = $4 }
    END { printf "%s %s %.0f %.3f %.3f %s %s\n", scenario, name, rps, p50, p99, rss, (bad == "" ? 0 : bad) }'
}

need
if [ -z "${GWCORE:-}" ]; then
  cargo build --release -q -p gwcore-cli
  GWCORE=$ROOT/target/release/gwcore
fi

nginx_conf backend >"$WORK/backend.conf"
start "$CLIENT_CPU" "$WORK/backend.log" nginx -c "$WORK/backend.conf"
wait_port $BACKEND_PORT

RESULTS=$WORK/results
: >"$RESULTS"
case $SCENARIOS in all) SCENARIOS="acme routes1000" ;; esac
for s in $SCENARIOS; do
  mkdir -p "$WORK/$s"
  gwcore_manifests "$s" >"$WORK/$s/gw.yaml"
  nginx_conf "$s" >"$WORK/$s/nginx.conf"
  haproxy_conf "$s" >"$WORK/$s/haproxy.cfg"

  for _ in $(seq 1 "$ROUNDS"); do
    start "$PROXY_CPU" "$WORK/$s/gwcore.log" env RUST_LOG=warn "$GWCORE" serve "$WORK/$s/gw.yaml" \
      --listen "80=127.0.0.1:$PROXY_PORT" --threads 1
    wait_port $PROXY_PORT; bench gwcore "$s" "$LAST_PID" >>"$RESULTS"; stop_last

    if [ -n "${GWCORE_BASE:-}" ]; then
      start "$PROXY_CPU" "$WORK/$s/gwcore-base.log" env RUST_LOG=warn "$GWCORE_BASE" serve "$WORK/$s/gw.yaml" \
        --listen "80=127.0.0.1:$PROXY_PORT" --threads 1
      wait_port $PROXY_PORT; bench gwcore-base "$s" "$LAST_PID" >>"$RESULTS"; stop_last
    fi

    start "$PROXY_CPU" "$WORK/$s/nginx.log" nginx -c "$WORK/$s/nginx.conf"
    wait_port $PROXY_PORT; sleep 0.2
    bench nginx "$s" "$(pgrep -P "$LAST_PID" | head -1 || echo "$LAST_PID")" >>"$RESULTS"; stop_last

    start "$PROXY_CPU" "$WORK/$s/haproxy.log" haproxy -f "$WORK/$s/haproxy.cfg"
    wait_port $PROXY_PORT; bench haproxy "$s" "$LAST_PID" >>"$RESULTS"; stop_last
    sleep 0.5
  done
done

# The median of each figure over the rounds (RSS: the largest; non-2xx:
# the sum), one line per scenario and proxy in the order measured.
median() { # median COLUMN < lines
  sort -g -k"$1" | awk -v c="$1" '{ v[NR] = $c } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
SUMMARY=$WORK/summary
: >"$SUMMARY"
awk '!seen[$1 " " $2]++ { print $1, $2 }' "$RESULTS" | while read -r s name; do
  rows=$(awk -v s="$s" -v n="$name" '$1 == s && $2 == n' "$RESULTS")
  rps=$(echo "$rows" | median 3); p50=$(echo "$rows" | median 4); p99=$(echo "$rows" | median 5)
  rss=$(echo "$rows" | sort -g -k6 | tail -1 | awk '{ print $6 }')
  bad=$(echo "$rows" | awk '{ b += $7 } END { print b + 0 }')
  printf '%s %s %.0f %.3f %.3f %s %s\n' "$s" "$name" "$rps" "$p50" "$p99" "$rss" "$bad" >>"$SUMMARY"
done
[ "$ROUNDS" -gt 1 ] && { echo; echo "each round (scenario proxy req/s p50 p99 RSS non-2xx):"; cat "$RESULTS"; }
RESULTS=$SUMMARY

echo
[ "$ROUNDS" -gt 1 ] && echo "median of $ROUNDS rounds:"
printf '%-11s %-11s %10s %9s %9s %9s %8s\n' scenario proxy 'req/s' 'p50 ms' 'p99 ms' 'RSS KiB' 'non-2xx'
while read -r s name rps p50 p99 rss bad; do
  printf '%-11s %-11s %10s %9s %9s %9s %8s\n' "$s" "$name" "$rps" "$p50" "$p99" "$rss" "$bad"
done <"$RESULTS"
echo
awk '{ rps[$1 " " $2] = $3; p99[$1 " " $2] = $5; s[$1] = 1 }
  END { for (x in s) {
    printf "%-11s gwcore/nginx req/s %.2f  p99 %.2f | gwcore/haproxy req/s %.2f  p99 %.2f\n", x,
      rps[x " gwcore"] / rps[x " nginx"], p99[x " gwcore"] / p99[x " nginx"],
      rps[x " gwcore"] / rps[x " haproxy"], p99[x " gwcore"] / p99[x " haproxy"]
    if ((x " gwcore-base") in rps)
      printf "%-11s gwcore-base/nginx req/s %.2f  p99 %.2f | gwcore/gwcore-base req/s %.2f  p99 %.2f\n", x,
        rps[x " gwcore-base"] / rps[x " nginx"], p99[x " gwcore-base"] / p99[x " nginx"],
        rps[x " gwcore"] / rps[x " gwcore-base"], p99[x " gwcore"] / p99[x " gwcore-base"] } }' "$RESULTS"
