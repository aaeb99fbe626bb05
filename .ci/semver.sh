#!/usr/bin/env bash
# Public API gate (docs/semver.md), called from .ci/run: cargo-semver-checks
# compares the public API of the library crates (gwcore, gwcore-proxy,
# gwcore-k8s, and gwcore-cli's `Cli`) with the commit in .ci/semver-baseline
# and fails on a change that would need a breaking release. Nothing is on
# crates.io yet, so the baseline is a commit of this repository; it moves
# forward with each release and each deliberate break (docs/semver.md,
# "Checked in CI").
#
# cargo-semver-checks is installed once into
# $GWCORE_CACHE/cargo-semver-checks-<version>, keyed by version. When it
# cannot be installed (no network, a build failure), the check is skipped
# with a message saying so; every other failure fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export GWCORE_CACHE="${GWCORE_CACHE:-$HOME/.cache/gwcore-ci}"

VERSION=0.51.0
root="$GWCORE_CACHE/cargo-semver-checks-$VERSION"
tool="$root/bin/cargo-semver-checks"

if ! "$tool" --version 2>/dev/null | grep -qx "cargo-semver-checks $VERSION"; then
    # A cold build takes about 14 minutes on one core; later runs find it.
    if ! cargo install cargo-semver-checks --locked --version "$VERSION" --root "$root"; then
        echo "SKIPPED: cargo-semver-checks $VERSION could not be installed (see the error above);" >&2
        echo "the public API was NOT checked against .ci/semver-baseline" >&2
        exit 0
    fi
fi

baseline="$(tr -d '[:space:]' < .ci/semver-baseline)"
if ! git cat-file -e "$baseline^{commit}" 2>/dev/null; then
    echo "the semver baseline $baseline (.ci/semver-baseline) is not in this clone's history;" >&2
    echo "a shallow clone needs 'git fetch --unshallow' first" >&2
    exit 1
fi
echo "baseline: $(git log -1 --format='%h %s' "$baseline" | cut -c1-100)"

# --release-type minor: between two releases, additions are fine and breaks
# are not, whatever the version in Cargo.toml says. Features: the tool's
# default, every feature (the `echo` test servers and `proptest`
# strategies are API too).
PATH="$root/bin:$PATH" cargo semver-checks \
    -p gwcore -p gwcore-proxy -p gwcore-k8s -p gwcore-cli \
    --baseline-rev "$baseline" --release-type minor
