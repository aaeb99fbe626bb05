#!/usr/bin/env bash
# A private kube-apiserver 1.20 + etcd for benches/k8s/first200.sh, on ports
# of its own (API $PORT, default 16543; etcd $PORT+7347 and +7357), so that
# the tests' server of .ci/k8s.sh (16443, etcd 23790) can be restarted by
# someone else meanwhile without breaking a run. Uses the binaries
# .ci/k8s.sh builds and caches (it is run once to build them if missing).
#
#   . benches/k8s/apiserver.sh DIR    # start; exports KUBECONFIG; stop_apiserver stops it
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SHARED="${GWCORE_SHARED:-$ROOT/../shared}/k8s"
BIN="${GWCORE_CACHE:-$HOME/.cache/gwcore-ci}/k8s-1.20.2/bin"
R="$1"
PORT="${PORT:-16543}"
ETCD=$((PORT + 7347))
PEER=$((PORT + 7357))

if ! [ -x "$BIN/kube-apiserver" ] || ! [ -x "$BIN/etcd" ]; then
  echo "apiserver.sh: building the binaries with .ci/k8s.sh (once)"
  bash "$ROOT/.ci/k8s.sh" start >/dev/null
fi
mkdir -p "$R"
openssl genrsa -out "$R/sa.key" 2048 2>/dev/null
echo 'admin-token,admin,admin,system:masters' > "$R/tokens.csv"
"$BIN/etcd" --data-dir "$R/etcd" --unsafe-no-fsync \
  --listen-client-urls "http://127.0.0.1:$ETCD" --advertise-client-urls "http://127.0.0.1:$ETCD" \
  --listen-peer-urls "http://127.0.0.1:$PEER" --initial-advertise-peer-urls "http://127.0.0.1:$PEER" \
  --initial-cluster "default=http://127.0.0.1:$PEER" > "$R/etcd.log" 2>&1 &
echo $! > "$R/etcd.pid"
"$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$PORT" \
  --endpoint-reconciler-type=none --cert-dir="$R/certs" --token-auth-file="$R/tokens.csv" \
  --authorization-mode=RBAC --disable-admission-plugins=ServiceAccount \
  --service-account-issuer=https://kubernetes.default.svc \
  --service-account-key-file="$R/sa.key" --service-account-signing-key-file="$R/sa.key" \
  --service-cluster-ip-range=10.96.0.0/12 > "$R/apiserver.log" 2>&1 &
echo $! > "$R/apiserver.pid"
stop_apiserver() {
  kill "$(cat "$R/apiserver.pid")" "$(cat "$R/etcd.pid")" 2>/dev/null || true
}
for _ in $(seq 300); do
  curl -sfk -H 'Authorization: Bearer admin-token' "https://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  kill -0 "$(cat "$R/apiserver.pid")" || { tail -20 "$R/apiserver.log" >&2; exit 1; }
  sleep 0.2
done
cat > "$R/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "https://127.0.0.1:$PORT", certificate-authority: "$R/certs/apiserver.crt"}}]
users: [{name: admin, user: {token: admin-token}}]
contexts: [{name: local, context: {cluster: local, user: admin}}]
current-context: local
KC
export KUBECONFIG="$R/kubeconfig"
python3 "$SHARED/crds-for-1.20.py" "$SHARED"/crds/standard/gateway.networking.k8s.io_*.yaml > "$R/crds.yaml"
kubectl apply --server-side --force-conflicts -f "$R/crds.yaml" > /dev/null
for _ in $(seq 100); do
  kubectl get --raw /apis/gateway.networking.k8s.io/v1 2>/dev/null | grep -q '"httproutes"' && break
  sleep 0.1
done
echo "apiserver.sh: API server on 127.0.0.1:$PORT with the Gateway API CRDs (KUBECONFIG=$KUBECONFIG)"
