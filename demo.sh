#!/usr/bin/env bash
# Weir's main job on a fresh machine: build the example stack in
# examples/busybox with the embedded worker (namespace sandbox, local cache
# under ~/.cache/weir), build it again (everything cached), and check out the
# report that the stack's script element produced.
#
# Environment: CARGO_TARGET_DIR (default ~/.cache/weir-target, outside the clone).
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/weir-target}

cargo build -q --bin weir
weir="$CARGO_TARGET_DIR/debug/weir"
project=examples/busybox

"$project/prepare.sh"
echo "== weir show"
"$weir" -C "$project" show --format '%{state: >10} %{key} %{name}' all.bst
echo "== weir build (first)"
"$weir" -C "$project" build all.bst
echo "== weir build (again: nothing to build)"
"$weir" -C "$project" build all.bst
out=$(mktemp -d)
"$weir" -C "$project" artifact checkout --directory "$out/report" report.bst
echo "== the report built by report.bst"
cat "$out/report/report.txt"
rm -rf "$out"
