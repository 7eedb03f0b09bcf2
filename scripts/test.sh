#!/usr/bin/env bash
# Runs every test: unit, runtime, chain-spec and end-to-end (real node binaries on
# loopback and in network namespaces), then the pallet benchmarks as tests. Installs what is
# missing first (scripts/setup.sh). Arguments go to the main `cargo test` (e.g. a test name).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$INTERLATTICE_ROOT"
"$INTERLATTICE_ROOT/scripts/setup.sh"
# One `cargo test` over the workspace builds the node binary too (the end-to-end tests run
# it), with the same features as everything else: a separate `cargo build -p` would compile
# much of polkadot-sdk a second time with other features.
echo "[test] building the workspace and its tests (first build: ~15 min on 2 cores, docs/benchmarks.md)" >&2
cargo test --locked --workspace --no-run
cargo test --locked -p pallet-provider-registry -p pallet-session-escrow --features runtime-benchmarks --no-run
# The tests run with only what a fresh machine has after setup on PATH (scripts/fresh-path.sh):
# a test that calls a program setup does not install fails here too.
FRESH_PATH="$("$INTERLATTICE_ROOT/scripts/fresh-path.sh")"
echo "[test] running the test suite" >&2
status=0
PATH="$FRESH_PATH" cargo test --locked --workspace --no-fail-fast "$@" || status=$?
echo "[test] running the pallet benchmarks as tests" >&2
PATH="$FRESH_PATH" cargo test --locked -p pallet-provider-registry -p pallet-session-escrow --features runtime-benchmarks benchmark || status=$?
exit "$status"
