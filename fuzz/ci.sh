#!/usr/bin/env bash
# Builds every fuzz target and runs each briefly (CI). Stable toolchain:
# cargo-fuzz with `-s none` (no sanitizer) needs no nightly.
#
#   bash fuzz/ci.sh            # 20 s per target
#   FUZZ_SECONDS=60 bash fuzz/ci.sh
#
# cargo-fuzz is installed into $GWCORE_CACHE/cargo-fuzz (default
# ~/.cache/gwcore-ci) once; builds go to $GWCORE_CACHE/fuzz-target.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${GWCORE_CACHE:-$HOME/.cache/gwcore-ci}"
seconds="${FUZZ_SECONDS:-20}"
export PATH="$cache/cargo-fuzz/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --version 0.13.2 --locked --root "$cache/cargo-fuzz"
fi
export CARGO_TARGET_DIR="$cache/fuzz-target"
cd "$here"
bash ./seed.sh
# The seed and regression inputs of the proxy's parser targets.
for t in h1_request h1_response h1_chunked tls_client_hello cidr proxy_protocol; do
  mkdir -p "corpus/$t" && cp regressions/"$t"/* "corpus/$t/"
done
cargo fuzz build -s none
for t in $(cargo fuzz list); do
  echo "--- fuzz $t for ${seconds}s"
  cargo fuzz run -s none "$t" -- -max_total_time="$seconds" 2>&1 | grep -E '^(#[0-9]+.*DONE|Done|==|SUMMARY|thread)' || true
  # A failure leaves an artifact (and a non-zero exit above is swallowed by grep).
  if ls artifacts/"$t"/* >/dev/null 2>&1; then
    echo "fuzz target $t failed: see fuzz/artifacts/$t" >&2
    exit 1
  fi
done
