#!/usr/bin/env bash
# Runs every test: unit, runtime, chain-spec and end-to-end (real node binaries on
# loopback). Installs what is missing first (scripts/setup.sh).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$INTERLATTICE_ROOT"
"$INTERLATTICE_ROOT/scripts/setup.sh"
# One `cargo test` over the workspace builds the node binary too (the end-to-end tests run
# it), with the same features as everything else: a separate `cargo build -p` would compile
# much of polkadot-sdk a second time with other features.
echo "[test] building and running the test suite (first build: ~20 min on 2 cores)" >&2
cargo test --locked --workspace --no-fail-fast "$@"
echo "[test] running the pallet benchmarks as tests" >&2
cargo test --locked -p pallet-provider-registry -p pallet-session-escrow --features runtime-benchmarks benchmark
