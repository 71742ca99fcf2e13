#!/usr/bin/env bash
# Runs Weir's whole test suite on a fresh machine.
#
# Installs what the tests need (Debian and PyPI/npm packages used by the peer
# checks), builds the workspace and runs every test with cargo-nextest.
# Environment:
#   CARGO_TARGET_DIR  build directory (default: ~/.cache/weir-target, outside the clone)
#   WEIR_PEER_CACHE   where peers (Bazel, BuildStream) are installed (default: ~/.cache/weir-peers)
#   WEIR_SHARED       the shared conformance data (default: ../shared beside the clone)
set -euo pipefail
cd "$(dirname "$0")"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/weir-target}
export WEIR_PEER_CACHE=${WEIR_PEER_CACHE:-$HOME/.cache/weir-peers}
export WEIR_SHARED=${WEIR_SHARED:-$(cd .. && pwd)/shared}
mkdir -p "$CARGO_TARGET_DIR" "$WEIR_PEER_CACHE"

if [ ! -d "$WEIR_SHARED/conformance" ]; then
    echo "test.sh: shared data not found at $WEIR_SHARED (expected ../shared beside the clone)" >&2
    exit 2
fi

# Debian packages the tests use (installed once; root on these machines).
need=()
for pkg in busybox-static bubblewrap; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "test.sh: installing ${need[*]}"
    SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cargo build --workspace --all-targets
cargo nextest run --workspace --no-fail-fast --failure-output final "$@"
