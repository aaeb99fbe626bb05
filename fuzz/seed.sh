#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from the conformance vectors and manifests
# (../shared, or $GWCORE_SHARED). Run from anywhere; idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
shared="${GWCORE_SHARED:-$here/../../shared}"
mkdir -p "$here/corpus/manifests" "$here/corpus/path_normalization" "$here/corpus/table_vs_reference"
cp "$shared"/conformance/manifests/*.yaml "$here/corpus/manifests/"
cp "$shared"/scenarios/manifests/*.yaml "$here/corpus/manifests/" 2>/dev/null || true
# Request paths of the vectors, one file each.
i=0
grep -ho "path: [^,}]*" "$shared"/conformance/vectors/*.yaml | sed 's/^path: //; s/^'"'"'//; s/'"'"'$//' | sort -u |
  while IFS= read -r p; do
    i=$((i + 1))
    printf '%s' "$p" > "$here/corpus/path_normalization/vector-$i"
    printf 'a.example.com %s' "$p" > "$here/corpus/table_vs_reference/vector-$i"
  done
echo "seeded $(ls "$here/corpus/manifests" | wc -l) manifests, $(ls "$here/corpus/path_normalization" | wc -l) paths"
