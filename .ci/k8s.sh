#!/usr/bin/env bash
# A genuine kube-apiserver (v1.20.2) + etcd on 127.0.0.1 for gwcore-k8s's
# integration tests, with the Gateway API CRDs installed.
#
#   source .ci/k8s.sh        # build (cached) + start + CRDs; exports KUBECONFIG,
#                            # GWCORE_K8S_TEST=1 and GWCORE_K8S_RUN (state dir)
#   bash .ci/k8s.sh stop     # stop what the last start started
#
# The binaries are built once from Debian's own sources by
# ../shared/k8s/build-kube-apiserver.sh (4-9 min on 2 cores) and cached
# OUTSIDE the checkout in ${GWCORE_CACHE:-$HOME/.cache/gwcore-ci}/k8s-1.20.2,
# so later runs start in seconds. API port: $GWCORE_K8S_PORT (default 16443);
# etcd uses 23790/23800.
gwcore_k8s_main() {
  local root shared version dir cmd
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  shared="${GWCORE_SHARED:-$root/../shared}/k8s"
  version=1.20.2
  dir="${GWCORE_CACHE:-$HOME/.cache/gwcore-ci}/k8s-$version"
  cmd="${1:-start}"

  # shellcheck source=pidfiles.sh
  . "$root/.ci/pidfiles.sh"
  # Stops what a previous start left running.
  gwcore_k8s_stop() {
    gwcore_stop_pidfiles "$dir"/run/apiserver.pid "$dir"/run/etcd.pid
  }

  case "$cmd" in
    stop) gwcore_k8s_stop; return 0 ;;
    start) ;;
    *) echo "usage: source .ci/k8s.sh | bash .ci/k8s.sh [start|stop]" >&2; return 2 ;;
  esac

  [ -d "$shared" ] || { echo "k8s.sh: $shared not found (../shared beside the checkout, or set GWCORE_SHARED)" >&2; return 1; }
  if [ -x "$dir/bin/kube-apiserver" ] && [ -x "$dir/bin/etcd" ]; then
    echo "k8s.sh: using cached kube-apiserver $version from $dir/bin"
  else
    echo "k8s.sh: building kube-apiserver $version into $dir (once; 4-9 min)"
    mkdir -p "$dir"
    # The build script's last line (`etcd --version | head -1` under
    # pipefail) can fail after both binaries are in place: judge the build
    # by the binaries, and show the log when they are missing.
    bash "$shared/build-kube-apiserver.sh" "$dir" > "$dir/build.log" 2>&1 \
      || echo "k8s.sh: the build script exited non-zero; checking its binaries"
    if ! { [ -x "$dir/bin/kube-apiserver" ] && "$dir/bin/kube-apiserver" --version >/dev/null 2>&1 \
      && [ -x "$dir/bin/etcd" ] && "$dir/bin/etcd" --version >/dev/null 2>&1; }; then
      tail -30 "$dir/build.log" >&2
      return 1
    fi
    # The sources, Go toolchain and build tree (~2.5 GB) are not needed once
    # the binaries are in $dir/bin.
    rm -rf "$dir/kubernetes-$version" "$dir/home" "$dir/root" "$dir/dl" "$dir/apt" "$dir/shim"
  fi

  gwcore_k8s_stop
  PORT="${GWCORE_K8S_PORT:-16443}" bash "$shared/run-kube-apiserver.sh" "$dir" || return 1
  export KUBECONFIG="$dir/run/kubeconfig"
  export GWCORE_K8S_RUN="$dir/run"
  export GWCORE_K8S_TEST=1

  python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet pyyaml || return 1
  local crds="$dir/run/gateway-api-crds.yaml"
  python3 "$shared/crds-for-1.20.py" "$shared"/crds/standard/gateway.networking.k8s.io_*.yaml > "$crds" || return 1
  if command -v kubectl >/dev/null; then
    kubectl apply --server-side --force-conflicts -f "$crds" > /dev/null || return 1
  else
    # Without kubectl: create each CRD through the API (JSON from the YAML).
    local server token
    server="https://127.0.0.1:${GWCORE_K8S_PORT:-16443}"
    token=admin-token
    python3 - "$crds" "$server" "$token" "$dir/run/certs/apiserver.crt" <<'PY' || return 1
import json, ssl, sys, urllib.request, urllib.error, yaml
path, server, token, ca = sys.argv[1:]
ctx = ssl.create_default_context(cafile=ca)
for doc in yaml.safe_load_all(open(path)):
    if not doc: continue
    req = urllib.request.Request(server + "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        data=json.dumps(doc).encode(), method="POST",
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    try: urllib.request.urlopen(req, context=ctx)
    except urllib.error.HTTPError as e:
        if e.code != 409: sys.exit("CRD %s: %s %s" % (doc["metadata"]["name"], e.code, e.read()[:300]))
PY
  fi
  # Wait until the Gateway API group serves HTTPRoutes.
  local i
  for i in $(seq 100); do
    if curl -sfk -H 'Authorization: Bearer admin-token' \
        "https://127.0.0.1:${GWCORE_K8S_PORT:-16443}/apis/gateway.networking.k8s.io/v1" 2>/dev/null | grep -q '"httproutes"'; then
      echo "k8s.sh: Gateway API CRDs served; KUBECONFIG=$KUBECONFIG"
      return 0
    fi
    sleep 0.1
  done
  echo "k8s.sh: the Gateway API CRDs are not served after 10 s" >&2
  return 1
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  # Executed, not sourced: the exports would be lost, so print them.
  gwcore_k8s_main "$@" || exit $?
  if [ "${1:-start}" = start ]; then
    echo "export KUBECONFIG=$KUBECONFIG GWCORE_K8S_RUN=$GWCORE_K8S_RUN GWCORE_K8S_TEST=1"
  fi
else
  gwcore_k8s_main "$@"
fi
