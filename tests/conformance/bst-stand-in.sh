#!/usr/bin/env bash
# Runs BuildStream in place of `weir` for the loader conformance runner, to
# check the runner itself against BuildStream's real output:
#
#   WEIR_BIN=tests/conformance/bst-stand-in.sh \
#     cargo test -p weir-tests --test loader_conformance loader_conformance -- --exact --nocapture
#
# bst prints no machine-readable error line and cannot fake the host or run
# the stub plugins, so error cases, `host:` cases and `plugin_stubs` cases
# fail; every other case must pass (196 of 331 with BuildStream 2.8.1).
# Needs the peer from ../shared/peers/bst/setup.sh (BST overrides its path).
set -euo pipefail
BST=${BST:-${WEIR_PEER_CACHE:-$HOME/.cache/weir-peers}/bst-2.8.1/bin/bst}
args=()
while [ $# -gt 0 ]; do
    case $1 in
        --error-format) shift ;;   # and its value
        project) if [ "${2:-}" = show ]; then args+=(workspace list); shift; else args+=("$1"); fi ;;
        *) args+=("$1") ;;
    esac
    shift
done
exec "$BST" --no-colors "${args[@]}"
