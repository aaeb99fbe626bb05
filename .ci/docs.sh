#!/usr/bin/env bash
# Docs and publishing gate (issue 8), called from .ci/run:
#   - rustdoc with -D warnings for every crate (libraries and the CLI);
#   - gwcore alone builds without default features and pulls in no runtime
#     (tokio, hyper, kube, ...);
#   - cargo deny: licenses, bans, sources (deny.toml); advisories too when
#     GWCORE_DENY_ADVISORIES=1 (it clones the RustSec database from GitHub);
#   - cargo package: every published crate packaged and verified (each
#     .crate builds on its own).
# cargo-deny is installed once into $GWCORE_CACHE/bin, keyed by version.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export GWCORE_CACHE="${GWCORE_CACHE:-$HOME/.cache/gwcore-ci}"
mkdir -p "$GWCORE_CACHE/bin"

CARGO_DENY_VERSION=0.20.2

step() { printf '\n=== docs.sh: %s (%ss)\n' "$1" "$SECONDS"; }

step "rustdoc -D warnings"
# The CLI's binary is named `gwcore` like the library, and both would be
# written to target/doc/gwcore: check the binary's docs first, then let the
# library's overwrite them.
cargo rustdoc -p gwcore-cli --bin gwcore -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --lib

step "gwcore without default features, and without adapter dependencies"
cargo build -p gwcore --no-default-features
# Every feature of gwcore, normal (non-dev) edges only.
deps="$(cargo tree -p gwcore -e normal --all-features --prefix none --format '{p}' | awk '{print $1}' | sort -u)"
forbidden="$(grep -xE 'tokio|tokio-.*|hyper|hyper-.*|h2|kube|kube-.*|k8s-openapi|mio|anyhow|tracing|rustls|socket2|futures|futures-.*' <<<"$deps" || true)"
if [[ -n "$forbidden" ]]; then
    echo "gwcore must stay pure (STYLE.md, Core and adapters), but depends on:" >&2
    echo "$forbidden" >&2
    exit 1
fi

step "cargo deny (cargo-deny $CARGO_DENY_VERSION)"
deny="$GWCORE_CACHE/bin/cargo-deny"
if ! "$deny" --version 2>/dev/null | grep -qx "cargo-deny $CARGO_DENY_VERSION"; then
    cargo install cargo-deny --locked --version "$CARGO_DENY_VERSION" --root "$GWCORE_CACHE"
fi
"$deny" check licenses bans sources
if [[ "${GWCORE_DENY_ADVISORIES:-0}" == 1 ]]; then
    "$deny" check advisories
fi

step "cargo package"
# Every published crate, verified: each packaged crate is built on its own
# from the .crate contents. The adapters depend on gwcore (and each other) by
# path and version; packaged together, cargo resolves those to the crates
# packaged alongside them, since none is on crates.io yet (checked with
# cargo 1.95; an older cargo may not resolve them: then use --no-verify).
# --allow-dirty: files the tests leave behind (proptest regressions) must not
# stop the check; what is packaged is listed by `cargo package --list`.
# Cargo takes registry crates to be immutable: it never unpacks a
# name-version into $CARGO_HOME/registry/src twice and never rebuilds one
# whose version is unchanged. The crates packaged here keep their version
# from one run to the next, so with cached directories the verification
# would build against an earlier run's gwcore (seen in CI: "no method named
# without_status"). So: a target directory of its own for packaging, and
# every unpacked or built copy of our crates removed first; the third-party
# dependencies stay cached.
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
package_target="$GWCORE_CACHE/package-target"
for krate in gwcore gwcore-proxy gwcore-k8s gwcore-cli; do
    rm -rf "$cargo_home"/registry/src/*/"$krate"-[0-9]* "$cargo_home"/registry/cache/*/"$krate"-[0-9]*.crate
done
krates_built=("$package_target"/debug/.fingerprint/gwcore* "$package_target"/debug/deps/*gwcore* "$package_target"/debug/build/gwcore* "$package_target"/package)
rm -rf "${krates_built[@]}"
CARGO_TARGET_DIR="$package_target" cargo package -p gwcore -p gwcore-proxy -p gwcore-k8s -p gwcore-cli --allow-dirty

step "docs.sh done"
