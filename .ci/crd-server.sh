#!/usr/bin/env bash
# The upstream CRD server of Kubernetes 1.36 (k8s.io/apiextensions-apiserver
# v0.36, CEL included) + etcd on 127.0.0.1, with the Gateway API CRDs of the
# experimental channel (a superset of the standard one) applied unmodified:
# the oracle of gwcore-k8s/tests/crd_server_diff.rs (docs/validation.md).
#
#   source .ci/crd-server.sh       # build (cached) + start + CRDs; exports
#                                  # GWCORE_CRD_SERVER (its kubeconfig)
#   bash .ci/crd-server.sh stop    # stop what the last start started
#
# The binaries are built once from Debian sid's packages by
# ../shared/k8s/build-crd-server.sh (~4 min on 2 cores) and cached OUTSIDE
# the checkout in ${GWCORE_CACHE:-$HOME/.cache/gwcore-ci}/crd-server-<key>,
# <key> = the script's target (v0.36) and a hash of the build script; sid
# moves, so the versions it got are written to <dir>/versions.txt and
# printed. API port: $GWCORE_CRD_PORT (default 16444); etcd uses 23791/23801
# (run-crd-server.sh), apart from the 1.20 server's 16443 and 23790/23800.
gwcore_crd_main() {
  local root shared key dir cmd port
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  shared="${GWCORE_SHARED:-$root/../shared}/k8s"
  cmd="${1:-start}"
  port="${GWCORE_CRD_PORT:-16444}"
  [ -f "$shared/build-crd-server.sh" ] || { echo "crd-server.sh: $shared/build-crd-server.sh not found (../shared beside the checkout, or set GWCORE_SHARED)" >&2; return 1; }
  key="v0.36-$(sha256sum "$shared/build-crd-server.sh" | cut -c1-12)"
  dir="${GWCORE_CACHE:-$HOME/.cache/gwcore-ci}/crd-server-$key"

  # shellcheck source=pidfiles.sh
  . "$root/.ci/pidfiles.sh"
  # Stops what a previous start left running.
  gwcore_crd_stop() {
    gwcore_stop_pidfiles "$dir"/run/apiext.pid "$dir"/run/etcd.pid
  }

  case "$cmd" in
    stop) gwcore_crd_stop; return 0 ;;
    start) ;;
    *) echo "usage: source .ci/crd-server.sh | bash .ci/crd-server.sh [start|stop]" >&2; return 2 ;;
  esac

  if [ -x "$dir/bin/apiextensions-apiserver" ] && [ -x "$dir/bin/etcd" ] && [ -f "$dir/versions.txt" ]; then
    echo "crd-server.sh: using the cached CRD server ($key) from $dir/bin"
  else
    echo "crd-server.sh: building the CRD server ($key) into $dir (once; ~4 min)"
    mkdir -p "$dir"
    # Judge the build by its binaries (its last lines print versions under
    # pipefail), and show the log when they are missing.
    bash "$shared/build-crd-server.sh" "$dir" > "$dir/build.log" 2>&1 \
      || echo "crd-server.sh: the build script exited non-zero; checking its binaries"
    if ! { [ -x "$dir/bin/apiextensions-apiserver" ] && [ -x "$dir/bin/etcd" ] \
      && "$dir/bin/etcd" --version >/dev/null 2>&1; }; then
      tail -30 "$dir/build.log" >&2
      return 1
    fi
    # What sid gave that day: the packages the server was built from.
    { echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) by $shared/build-crd-server.sh (key $key)"
      ls "$dir"/dl 2>/dev/null | grep -E '^(golang-1\.[0-9]+-go|etcd-server|kubectl|golang-k8s-(apiextensions-apiserver|apiserver|apimachinery)-dev|golang-cel-cel-go-dev)_' \
        | sed 's/_all\.deb$//; s/_amd64\.deb$//; s/_arm64\.deb$//'
      "$dir/bin/etcd" --version 2>/dev/null | head -1
    } > "$dir/versions.txt"
    # Sources, Go toolchain, packages and Go's cache (~2.5 GB) are not needed
    # once the binaries are in $dir/bin.
    rm -rf "$dir/root" "$dir/dl" "$dir/apt" "$dir/gocache" "$dir/home"
  fi
  sed 's/^/crd-server.sh:   /' "$dir/versions.txt"

  gwcore_crd_stop
  PORT="$port" bash "$shared/run-crd-server.sh" "$dir" || return 1
  export GWCORE_CRD_SERVER="$dir/run/kubeconfig"
  # run-crd-server.sh signs the client certificate as X.509 v1, which
  # rustls (kube-rs) refuses: sign the same request again as v3, by the
  # same CA (the server trusts the CA, not the certificate).
  (cd "$dir/run/pki" && openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
    -out admin.crt -days 365 -extfile <(printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n') 2>/dev/null) \
    || { echo "crd-server.sh: could not sign a v3 client certificate" >&2; return 1; }

  python3 -c 'import yaml' 2>/dev/null || python3 -m pip install --quiet pyyaml || return 1
  # Each CRD as it is (no kubectl: its discovery fails on this server), then
  # wait until all are Established.
  python3 - "https://127.0.0.1:$port" "$dir/run" "$shared"/crds/experimental/gateway.networking.k8s.io_*.yaml <<'PY' || return 1
import json, ssl, sys, time, urllib.request, urllib.error, yaml
server, run, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
ctx = ssl.create_default_context(cafile=run + "/certs/apiserver.crt")
ctx.load_cert_chain(run + "/pki/admin.crt", run + "/pki/admin.key")
base = server + "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
names = []
for path in paths:
    for doc in yaml.safe_load_all(open(path)):
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue  # the ValidatingAdmissionPolicy beside them: not served here
        names.append(doc["metadata"]["name"])
        req = urllib.request.Request(base, data=json.dumps(doc).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, context=ctx)
        except urllib.error.HTTPError as e:
            if e.code != 409:
                sys.exit("CRD %s: %s %s" % (doc["metadata"]["name"], e.code, e.read()[:500]))
deadline = time.time() + 30
for name in names:
    while True:
        crd = json.load(urllib.request.urlopen(base + "/" + name, context=ctx))
        conds = (crd.get("status") or {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conds):
            break
        if time.time() > deadline:
            sys.exit("CRD %s not Established after 30 s: %s" % (name, conds))
        time.sleep(0.1)
print("crd-server.sh: %d Gateway API CRDs (experimental channel) established" % len(names))
PY
  echo "crd-server.sh: GWCORE_CRD_SERVER=$GWCORE_CRD_SERVER"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  # Executed, not sourced: the export would be lost, so print it.
  gwcore_crd_main "$@" || exit $?
  if [ "${1:-start}" = start ]; then
    echo "export GWCORE_CRD_SERVER=$GWCORE_CRD_SERVER"
  fi
else
  gwcore_crd_main "$@"
fi
