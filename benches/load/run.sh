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
# 1), GWCORE (a built binary; default: builds release/gwcore in
# CARGO_TARGET_DIR, else target/),
# GWCORE_BASE (another gwcore binary, measured in the same rounds as
# "gwcore-base": a change's before and after under the same load),
# BACKEND_PORT / PROXY_PORT (default 19000 and 18080; both must be free),
# RATES (offered loads in req/s for the fixed-rate latency runs, default
# "20000 40000"; empty skips them), OHA (the oha binary for those runs;
# default: oha on PATH, else oha $OHA_VERSION installed with cargo into
# ~/.cache/gwcore-bench, outside the checkout, once per version),
# LAYOUTS (default "alone shared", see below), LOG_LAYOUTS (the layouts
# also measured with access logs on, default "alone"; empty: none).
#
# Each proxy serves with one worker (nginx worker_processes 1, haproxy
# nbthread 1, gwcore --threads 1) pinned to PROXY_CPU. Two core layouts:
#   alone   the proxy alone on PROXY_CPU; wrk and the backend (an nginx
#           answering "ok") share CLIENT_CPU.
#   shared  the proxy shares PROXY_CPU with the backend; wrk alone on
#           CLIENT_CPU.
# Each case is named SCENARIO/LAYOUT, and SCENARIO/LAYOUT/logs for the runs
# with access logs on: gwcore with its default access log (RUST_LOG=info,
# standard error to a file), nginx with `access_log FILE combined
# buffer=64k flush=1s` (haproxy only logs to syslog: not in those runs);
# once each stops, its log's lines are counted against the requests it
# answered, so a line lost at shutdown shows. Without /logs no proxy
# writes an access log. Installs nginx, haproxy and
# wrk from Debian packages if they are missing.
#
# Besides req/s and latency, each run reports the proxy's CPU time per
# request (user and sys, from /proc/PID/stat around the measured wrk run) and
# how busy both cores were (/proc/stat). When the client core is saturated,
# req/s is the client's limit, not the proxy's: compare CPU per request.
#
# wrk keeps every connection busy (a closed loop), so its latencies are
# those of a saturated proxy. The fixed-rate runs offer each proxy the same
# load, RATE requests a second over the same CONNECTIONS, with oha; a
# request's latency counts from when it was due, not from when a free
# connection sent it (--latency-correction), so a stall shows in full.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SCENARIOS=${1:-all}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-1}
PROXY_CPU=${PROXY_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BACKEND_PORT=${BACKEND_PORT:-19000}
PROXY_PORT=${PROXY_PORT:-18080}
RATES=${RATES-20000 40000}
LAYOUTS=${LAYOUTS:-alone shared}
LOG_LAYOUTS=${LOG_LAYOUTS-alone}
OHA_VERSION=1.16.0
CLK_TCK=$(getconf CLK_TCK)
# shellcheck source=../lib.sh
. "$ROOT/benches/lib.sh"
work_dir gwcore-load

need() {
  local missing=()
  for tool in nginx haproxy wrk; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  if [ ${#missing[@]} -gt 0 ]; then
    pkgs=()
    for t in "${missing[@]}"; do case $t in nginx) pkgs+=(nginx-light) ;; *) pkgs+=("$t") ;; esac; done
    echo "installing ${pkgs[*]}" >&2
    (apt-get install -y "${pkgs[@]}" >/dev/null 2>&1) || { apt-get update >/dev/null && apt-get install -y "${pkgs[@]}" >/dev/null; }
  fi
  [ -z "$RATES" ] && return 0
  command -v python3 >/dev/null || { echo "the fixed-rate runs need python3 (or set RATES=)" >&2; exit 1; }
  if [ -z "${OHA:-}" ]; then
    local root=${XDG_CACHE_HOME:-$HOME/.cache}/gwcore-bench/oha-$OHA_VERSION
    OHA=$(command -v oha || true)
    if [ -z "$OHA" ]; then
      OHA=$root/bin/oha
      if [ ! -x "$OHA" ]; then
        echo "installing oha $OHA_VERSION into $root (a few minutes, once)" >&2
        cargo install -q --locked oha --version "$OHA_VERSION" --root "$root" >&2
      fi
    fi
  fi
}

start() { # start CPU LOGFILE CMD... ; records the pid
  local cpu=$1 log=$2; shift 2
  taskset -c "$cpu" "$@" >"$log" 2>&1 &
  PIDS+=($!)
  LAST_PID=$!
}

stop_last() { kill "$LAST_PID" 2>/dev/null || true; wait "$LAST_PID" 2>/dev/null || true; }

port_free() { # fail if something (an earlier run, someone else's test) listens already
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    echo "port $1 is already in use; free it or set ${2}_PORT" >&2; exit 1
  fi
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

nginx_conf() { # nginx_conf SCENARIO|backend [ACCESS_LOG_FILE]
  local log="off"
  [ -n "${2:-}" ] && log="$2 combined buffer=64k flush=1s"
  cat <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx-$1.pid;
error_log $WORK/nginx-$1-error.log;
events { worker_connections 4096; }
http {
  access_log $log;
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
proc_ticks() { # proc_ticks PID: user and system CPU time of the process (all threads), in clock ticks
  # Fields 14 and 15 of /proc/PID/stat. The command name (field 2) may hold
  # spaces, so count from its closing parenthesis: utime is then field 12.
  sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12, $13 }'
}

core_ticks() { # core_ticks CPU: busy and total clock ticks of one core since boot
  # user nice system idle iowait irq softirq steal (guest time is already in
  # user and nice); busy = total - idle - iowait.
  awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

ctx_switches() { # ctx_switches PID: voluntary context switches of the process (all threads): times it slept waiting for work
  cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches/ { n += $2 } END { print n + 0 }'
}

nginx_worker() { # nginx_worker MASTER: the pid of the master's worker, which serves the traffic
  local w
  for _ in $(seq 1 50); do
    w=$(pgrep -P "$1" -f 'worker process' | head -1 || true)
    [ -n "$w" ] && { echo "$w"; return 0; }
    sleep 0.1
  done
  echo "nginx $1 has no worker process" >&2; return 1
}

bench() { # bench NAME SCENARIO PID (PID: the process serving the traffic)
  local name=$1 scenario=$2 pid=$3
  local url host out rss u0 s0 u1 s1 pb0 pt0 pb1 pt1 cb0 ct0 cb1 ct1
  url=$(request_url "${scenario%%/*}"); host=$(request_host "${scenario%%/*}")
  # Warm up, check the route answers 200.
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $host" "$url")
  [ "$code" = 200 ] || { echo "$name: $url answered $code, not 200" >&2; return 1; }
  echo 1 >>"$WORK/answered"
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d1s -H "Host: $host" "$url" |
    awk '/ requests in / { print $1 }' >>"$WORK/answered"
  # CPU time of the proxy and busy time of both cores, right around the
  # measured run only.
  read -r u0 s0 < <(proc_ticks "$pid" || true)
  read -r pb0 pt0 < <(core_ticks "$PROXY_CPU"); read -r cb0 ct0 < <(core_ticks "$CLIENT_CPU")
  w0=$(ctx_switches "$pid")
  out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Host: $host" "$url")
  read -r u1 s1 < <(proc_ticks "$pid" || true)
  w1=$(ctx_switches "$pid")
  [ -n "$u0" ] && [ -n "$u1" ] || { echo "$name: process $pid is gone" >&2; return 1; }
  read -r pb1 pt1 < <(core_ticks "$PROXY_CPU"); read -r cb1 ct1 < <(core_ticks "$CLIENT_CPU")
  rss=$(ps -o rss= -p "$pid" | tr -d ' ')
  echo "$out" | awk -v name="$name" -v scenario="$scenario" -v rss="$rss" -v tck="$CLK_TCK" -v pid="$pid" \
    -v du=$((u1 - u0)) -v ds=$((s1 - s0)) -v pb=$((pb1 - pb0)) -v pt=$((pt1 - pt0)) -v cb=$((cb1 - cb0)) -v ct=$((ct1 - ct0)) -v dw=$((w1 - w0)) -v answered="$WORK/answered" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    / requests in / { n = $1 }
    /Requests\/sec/ { rps = $2 }
    / 50%/ { p50 = ms($2) }
    / 99%/ { p99 = ms($2) }
    /Non-2xx/ { bad = $4 }
    END {
      print n >> answered
      if (n > 0 && du + ds == 0) printf "%s: process %s used no CPU time during the run: not the one serving it?\n", name, pid > "/dev/stderr"
      usr = n > 0 ? du / tck * 1e6 / n : 0; sys = n > 0 ? ds / tck * 1e6 / n : 0
      printf "%s %s %.0f %.3f %.3f %s %s %.2f %.2f %.2f %.0f %.0f %.3f\n", scenario, name, rps, p50, p99, rss, (bad == "" ? 0 : bad),
        usr, sys, usr + sys, (pt > 0 ? 100 * pb / pt : 0), (ct > 0 ? 100 * cb / ct : 0), (n > 0 ? dw / n : 0) }'
}

fixed_rate() { # fixed_rate NAME SCENARIO PID: one oha run per rate in RATES
  local name=$1 scenario=$2 pid=$3 rate url host u0 s0 u1 s1
  url=$(request_url "${scenario%%/*}"); host=$(request_host "${scenario%%/*}")
  for rate in $RATES; do
    read -r u0 s0 < <(proc_ticks "$pid" || true)
    taskset -c "$CLIENT_CPU" "$OHA" --no-tui --output-format json -c "$CONNECTIONS" -q "$rate" \
      --latency-correction --wait-ongoing-requests-after-deadline -z "${DURATION}s" \
      --worker-threads 1 --host "$host" "$url" >"$WORK/oha.json"
    read -r u1 s1 < <(proc_ticks "$pid" || true)
    [ -n "$u0" ] && [ -n "$u1" ] || { echo "$name: process $pid is gone" >&2; return 1; }
    python3 - "$WORK/oha.json" "$scenario" "$name" "$rate" $(((u1 - u0) + (s1 - s0))) "$CLK_TCK" "$WORK/answered" <<'PY'
import json, sys
path, scenario, name, rate, ticks, tck, answered = sys.argv[1:]
d = json.load(open(path))
s, lat = d["summary"], d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
done = sum(codes.values())
bad = done - codes.get("200", 0) + sum(d.get("errorDistribution", {}).values())
ms = lambda k: (lat.get(k) or 0) * 1000
cpu = int(ticks) / int(tck) * 1e6 / done if done else 0
print(done, file=open(answered, "a"))
print(f"{scenario} {name} {rate} {s['requestsPerSec']:.0f} {ms('p50'):.3f} {ms('p99'):.3f} {ms('p99.9'):.3f} {bad} {cpu:.2f}")
PY
  done
}

need
if [ -z "${GWCORE:-}" ]; then
  cargo build --release -q -p gwcore-cli
  GWCORE=${CARGO_TARGET_DIR:-$ROOT/target}/release/gwcore
fi

port_free "$BACKEND_PORT" BACKEND; port_free "$PROXY_PORT" PROXY
nginx_conf backend >"$WORK/backend.conf"
for layout in $LAYOUTS; do
  case $layout in alone | shared) ;; *) echo "unknown layout $layout (alone, shared)" >&2; exit 1 ;; esac
done

RESULTS=$WORK/results
RATED=$WORK/rated
: >"$RESULTS"; : >"$RATED"
measure() { # measure NAME SCENARIO PID: wrk's closed loop, then the fixed rates
  bench "$@" >>"$RESULTS"
  [ -z "$RATES" ] || fixed_rate "$@" >>"$RATED"
}
case $SCENARIOS in all) SCENARIOS="acme routes1000" ;; esac
# With access logs on, each proxy's log is checked against the requests it
# answered (curl's, wrk's and oha's, warm-ups included): a line lost at
# shutdown shows as fewer lines than answers. Requests in flight when wrk
# stops are answered and logged but not counted by wrk, so a few more lines
# than answers (up to CONNECTIONS per wrk run) are normal.
log_lines() { # log_lines CASE PROXY FILE: one line of the report
  local lines answered
  lines=$(grep -c -e ' gwcore::access: ' -e '" 200 ' "$3" 2>/dev/null || true)
  answered=$(awk '{ n += $1 } END { print n + 0 }' "$WORK/answered")
  printf '%-23s %-11s %9s lines for %9s answered%s\n' "$1" "$2" "$lines" "$answered" \
    "$([ "${lines:-0}" -lt "$answered" ] && echo ": LINES MISSING")" >>"$WORK/log-lines"
}
for s in $SCENARIOS; do
  mkdir -p "$WORK/$s"
  gwcore_manifests "$s" >"$WORK/$s/gw.yaml"
  nginx_conf "$s" >"$WORK/$s/nginx.conf"
  nginx_conf "$s" "$WORK/$s/nginx-access.log" >"$WORK/$s/nginx-logs.conf"
  haproxy_conf "$s" >"$WORK/$s/haproxy.cfg"

  for layout in $LAYOUTS; do
    # The backend runs beside the client (alone) or beside the proxy (shared).
    backend_cpu=$CLIENT_CPU; [ "$layout" = shared ] && backend_cpu=$PROXY_CPU
    start "$backend_cpu" "$WORK/backend.log" nginx -c "$WORK/backend.conf"
    BACKEND_PID=$LAST_PID
    wait_port $BACKEND_PORT
    logs_runs=off
    case " $LOG_LAYOUTS " in *" $layout "*) logs_runs="off on" ;; esac
    for logs in $logs_runs; do
      case_name=$s/$layout; gw_log=warn; nginx_cfg=$WORK/$s/nginx.conf
      if [ "$logs" = on ]; then case_name=$s/$layout/logs; gw_log=info; nginx_cfg=$WORK/$s/nginx-logs.conf; fi
      for _ in $(seq 1 "$ROUNDS"); do
        for gw in gwcore ${GWCORE_BASE:+gwcore-base}; do
          bin=$GWCORE; [ "$gw" = gwcore-base ] && bin=$GWCORE_BASE
          : >"$WORK/answered"
          start "$PROXY_CPU" "$WORK/$s/$gw.log" env RUST_LOG=$gw_log "$bin" serve "$WORK/$s/gw.yaml" \
            --listen "80=127.0.0.1:$PROXY_PORT" --threads 1
          wait_port $PROXY_PORT; measure "$gw" "$case_name" "$LAST_PID"; stop_last
          [ "$logs" = off ] || log_lines "$case_name" "$gw" "$WORK/$s/$gw.log"
          rm -f "$WORK/$s/$gw.log"
        done

        : >"$WORK/answered"
        start "$PROXY_CPU" "$WORK/$s/nginx.log" nginx -c "$nginx_cfg"
        wait_port $PROXY_PORT; sleep 0.2
        measure nginx "$case_name" "$(nginx_worker "$LAST_PID")"; stop_last
        [ "$logs" = off ] || log_lines "$case_name" nginx "$WORK/$s/nginx-access.log"
        rm -f "$WORK/$s/nginx-access.log"

        if [ "$logs" = off ]; then
          start "$PROXY_CPU" "$WORK/$s/haproxy.log" haproxy -f "$WORK/$s/haproxy.cfg"
          wait_port $PROXY_PORT; measure haproxy "$case_name" "$LAST_PID"; stop_last
        fi
        sleep 0.5
      done
    done
    kill "$BACKEND_PID" 2>/dev/null || true; wait "$BACKEND_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$BACKEND_PORT") 2>/dev/null || break; sleep 0.1; done
  done
done

# The median of each figure over the rounds (RSS: the largest; non-2xx:
# the sum; CPU per request and busy shares: the median of each column), one
# line per scenario and proxy in the order measured.
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
  usr=$(echo "$rows" | median 8); sys=$(echo "$rows" | median 9); cpu=$(echo "$rows" | median 10)
  pbusy=$(echo "$rows" | median 11); cbusy=$(echo "$rows" | median 12); sleeps=$(echo "$rows" | median 13)
  printf '%s %s %.0f %.3f %.3f %s %s %.2f %.2f %.2f %.0f %.0f %.3f\n' "$s" "$name" "$rps" "$p50" "$p99" "$rss" "$bad" \
    "$usr" "$sys" "$cpu" "$pbusy" "$cbusy" "$sleeps" >>"$SUMMARY"
done
[ "$ROUNDS" -gt 1 ] && { echo; echo "each round (case proxy req/s p50 p99 RSS non-2xx user-us/req sys-us/req CPU-us/req proxy-busy% client-busy% sleeps/req):"; cat "$RESULTS"; }
RESULTS=$SUMMARY

echo
[ "$ROUNDS" -gt 1 ] && echo "median of $ROUNDS rounds:"
printf '%-23s %-11s %10s %9s %9s %9s %8s %11s %10s %10s %10s %11s %10s\n' case proxy 'req/s' 'p50 ms' 'p99 ms' 'RSS KiB' 'non-2xx' \
  'user us/req' 'sys us/req' 'CPU us/req' 'proxy busy' 'client busy' 'sleeps/req'
while read -r s name rps p50 p99 rss bad usr sys cpu pbusy cbusy sleeps; do
  printf '%-23s %-11s %10s %9s %9s %9s %8s %11s %10s %10s %10s %11s %10s\n' "$s" "$name" "$rps" "$p50" "$p99" "$rss" "$bad" \
    "$usr" "$sys" "$cpu" "$pbusy%" "$cbusy%" "$sleeps"
done <"$RESULTS"
echo "(us/req: the proxy's CPU microseconds per request (its own process only); busy: share of core $PROXY_CPU (proxy, + backend in /shared) and core $CLIENT_CPU (wrk, + backend in /alone) in use during the run; sleeps/req: the proxy's voluntary context switches (it waited for work) per request)"
# A saturated client core caps req/s whatever the proxy: say so.
awk -v c="$CLIENT_CPU" '$12 >= 95 { bound = bound (bound == "" ? "" : ", ") $1 "/" $2 }
  END { if (bound != "") printf "note: client-bound (core %s >= 95%% busy): %s. There req/s is capped by the client core, not the proxy; CPU us/req is the comparable figure.\n", c, bound }' "$RESULTS"
echo
awk '{ k = $1 " " $2; if (!(k in cpu)) order[$1] = order[$1] " " $2; cpu[k] = $10 }
  END { for (x in order) {
    line = sprintf("%-23s capacity per core (1e6 / CPU us/req):", x)
    n = split(order[x], names, " ")
    for (i = 1; i <= n; i++) line = line sprintf("%s %s %s", (i > 1 ? "," : ""), names[i], cpu[x " " names[i]] > 0 ? sprintf("%.0f req/s", 1e6 / cpu[x " " names[i]]) : "n/a")
    print line } }' "$RESULTS" | sort
# The ratios, for each case (SCENARIO/LAYOUT[/logs]); "n/a" where a proxy
# was not measured (haproxy in the /logs cases).
awk 'function r(a, b) { return (b > 0 && a != "") ? sprintf("%.2f", a / b) : "n/a" }
  { rps[$1 " " $2] = $3; p99[$1 " " $2] = $5; cpu[$1 " " $2] = $10; s[$1] = 1 }
  END { for (x in s) {
    printf "%-23s gwcore/nginx CPU per request %s  req/s %s  p99 %s | gwcore/haproxy CPU per request %s  req/s %s  p99 %s\n", x,
      r(cpu[x " gwcore"], cpu[x " nginx"]), r(rps[x " gwcore"], rps[x " nginx"]), r(p99[x " gwcore"], p99[x " nginx"]),
      r(cpu[x " gwcore"], cpu[x " haproxy"]), r(rps[x " gwcore"], rps[x " haproxy"]), r(p99[x " gwcore"], p99[x " haproxy"])
    if ((x " gwcore-base") in rps)
      printf "%-23s gwcore/gwcore-base CPU per request %s  req/s %s  p99 %s | gwcore-base/nginx CPU per request %s\n", x,
        r(cpu[x " gwcore"], cpu[x " gwcore-base"]), r(rps[x " gwcore"], rps[x " gwcore-base"]), r(p99[x " gwcore"], p99[x " gwcore-base"]),
        r(cpu[x " gwcore-base"], cpu[x " nginx"]) } }' "$RESULTS" | sort
if [ -s "$WORK/log-lines" ]; then
  echo; echo "access logs (lines each proxy wrote after it stopped, against the requests it answered):"; cat "$WORK/log-lines"
fi

[ -s "$RATED" ] || exit 0
echo
[ "$ROUNDS" -gt 1 ] && { echo "fixed-rate runs, each round (case proxy offered req/s p50 p99 p99.9 errors CPU-us/req):"; cat "$RATED"; echo; }
of=""; [ "$ROUNDS" -gt 1 ] && of=" (medians of $ROUNDS rounds)"
echo "fixed rate: $CONNECTIONS connections, oha offering the same req/s to each proxy; latency from when each request was due$of"
printf '%-23s %-11s %9s %10s %9s %9s %9s %7s %11s\n' case proxy offered 'req/s' 'p50 ms' 'p99 ms' 'p99.9 ms' errors 'CPU us/req'
awk '!seen[$1 " " $2 " " $3]++ { print $1, $2, $3 }' "$RATED" | while read -r s name rate; do
  rows=$(awk -v s="$s" -v n="$name" -v r="$rate" '$1 == s && $2 == n && $3 == r' "$RATED")
  got=$(echo "$rows" | median 4); p50=$(echo "$rows" | median 5); p99=$(echo "$rows" | median 6)
  p999=$(echo "$rows" | median 7); bad=$(echo "$rows" | awk '{ b += $8 } END { print b + 0 }'); cpu=$(echo "$rows" | median 9)
  printf '%-23s %-11s %9s %10.0f %9.3f %9.3f %9.3f %7s %11.2f\n' "$s" "$name" "$rate" "$got" "$p50" "$p99" "$p999" "$bad" "$cpu"
done | tee "$WORK/rated-summary"
awk '$4 < 0.97 * $3 { over = over (over == "" ? "" : ", ") $1 "/" $2 " at " $3 }
  END { if (over != "") print "note: below the offered rate (overloaded, its latencies are queueing): " over }' "$WORK/rated-summary"
awk '{ p99[$1 " " $2 " " $3] = $6; cpu[$1 " " $2 " " $3] = $9; key[$1 " " $3] = 1 }
  END { for (k in key) { split(k, a, " ")
    if ((a[1] " gwcore " a[2]) in p99 && (a[1] " nginx " a[2]) in p99 && p99[a[1] " nginx " a[2]] > 0)
      printf "%-23s at %s req/s: gwcore/nginx p99 %.2f  CPU per request %.2f\n", a[1], a[2], p99[a[1] " gwcore " a[2]] / p99[a[1] " nginx " a[2]], (cpu[a[1] " nginx " a[2]] > 0 ? cpu[a[1] " gwcore " a[2]] / cpu[a[1] " nginx " a[2]] : 0) } }' "$WORK/rated-summary" | sort
