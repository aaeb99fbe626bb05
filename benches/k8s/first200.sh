#!/usr/bin/env bash
# New HTTPRoute → first 200 from `gwcore serve --kubernetes` on a real
# kube-apiserver, with N routes already on the Gateway (issue 17).
#
#   benches/k8s/first200.sh                  # N = 0, 3000, 10000; 100 measured each
#   SIZES="0 3000" MEASURE=200 benches/k8s/first200.sh
#
# Starts a private kube-apiserver 1.20 + etcd (benches/k8s/apiserver.sh:
# the binaries .ci/k8s.sh builds once and caches in ~/.cache/gwcore-ci, on
# ports of their own, stopped on exit); USE_KUBECONFIG=1 uses the cluster
# KUBECONFIG names instead.
# Builds the release `gwcore` and the driver (benches/k8s/first200.rs,
# `--features k8s`), then runs the driver once per size. Each run has a
# namespace and GatewayClass of its own and deletes its objects when done.
#
# Settings (environment): SIZES ("0 3000 10000"), MEASURE (100 new routes
# per size), GAP_MS (50, between two new routes), CONCURRENCY (32 creates in
# flight while preloading), POLL_US (500, between two probes of a new
# route), LOGDIR (keep gwcore's JSON logs there),
# NO_BUILD=1 with GWCORE=path and DRIVER=path (binaries built before).
# On a shared 2-core machine check `uptime` first: the API server, etcd,
# gwcore and the driver share the cores, and figures move with the load.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

. "$ROOT/benches/lib.sh"
work_dir gwcore-first200
if [ -n "${USE_KUBECONFIG:-}" ]; then
  echo "first200: using the API server of KUBECONFIG=$KUBECONFIG"
else
  # A private API server (stopped on exit): the tests' one may be
  # restarted by anyone running `source .ci/k8s.sh` meanwhile.
  # shellcheck source=apiserver.sh
  . "$ROOT/benches/k8s/apiserver.sh" "$WORK/k8s"
  PIDS+=("$(cat "$WORK/k8s/apiserver.pid")" "$(cat "$WORK/k8s/etcd.pid")")
  # Their CPU time during each sample is reported beside gwcore's.
  WATCH_PIDS="apiserver=$(cat "$WORK/k8s/apiserver.pid"),etcd=$(cat "$WORK/k8s/etcd.pid")"
fi

GWCORE="${GWCORE:-$CARGO_TARGET_DIR/release/gwcore}"
DRIVER="${DRIVER:-$CARGO_TARGET_DIR/release/k8s-first200}"
if [ -z "${NO_BUILD:-}" ]; then
  (cd "$ROOT" && cargo build --release -p gwcore-cli --bin gwcore &&
    cargo build --release -p gwcore-benches --features k8s --bin k8s-first200)
fi

for n in ${SIZES:-0 3000 10000}; do
  log=()
  if [ -n "${LOGDIR:-}" ]; then
    mkdir -p "$LOGDIR"
    log=(--log "$LOGDIR/gwcore-first200-$n.log")
  fi
  echo
  echo "== $n routes on the Gateway ($(uptime | sed 's/.*load/load/'))"
  "$DRIVER" --gwcore "$GWCORE" \
    --routes "$n" --measure "${MEASURE:-100}" --gap-ms "${GAP_MS:-50}" \
    --concurrency "${CONCURRENCY:-32}" --poll-us "${POLL_US:-500}" \
    --pids "${WATCH_PIDS:-}" "${log[@]}"
done
