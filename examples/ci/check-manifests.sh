#!/usr/bin/env bash
# Validate Gateway API manifests with `gwcore check` before `kubectl apply`.
#
#   check-manifests.sh [--strict] FILE|DIR...
#
# Exit status:
#   0  the manifests are valid (and, with --strict, every route attaches);
#   1  a manifest is invalid: the API server would refuse it, or it is not
#      YAML/JSON that gwcore can read (the errors name file, line and field);
#   2  with --strict: valid, but a route would not attach to its parent
#      (wrong namespace, no matching listener, hostname mismatch, ...).
#
# gwcore computes the statuses a controller would write, without a cluster.
# Give it the Gateways and GatewayClasses your routes attach to (for example
# a checked-out copy of the platform team's manifests), or every route is
# reported as unattached. The computed statuses are written as JSON to
# $GWCORE_STATUS_OUT when it is set.
#
# The gwcore binary is $GWCORE, or `gwcore` on PATH
# (cargo install gwcore-cli).
set -euo pipefail

gwcore="${GWCORE:-gwcore}"
strict=0
if [[ "${1:-}" == "--strict" ]]; then
  strict=1
  shift
fi
if [[ $# -eq 0 ]]; then
  echo "usage: $0 [--strict] FILE|DIR..." >&2
  exit 64
fi

status_out="${GWCORE_STATUS_OUT:-/dev/null}"
err="$(mktemp)"
trap 'rm -f "$err"' EXIT

if ! "$gwcore" check --output json "$@" >"$status_out" 2>"$err"; then
  cat "$err" >&2
  echo "check-manifests: invalid manifests; apply nothing" >&2
  exit 1
fi
cat "$err" >&2
if [[ $strict -eq 1 ]] && grep -q '^refused (' "$err"; then
  echo "check-manifests: some routes would not attach (see 'refused' above)" >&2
  exit 2
fi
echo "check-manifests: ok" >&2
