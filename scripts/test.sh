#!/usr/bin/env bash
# Runs every test: unit, runtime, chain-spec and end-to-end (real node binaries on
# loopback). Installs what is missing first (scripts/setup.sh).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$INTERLATTICE_ROOT"
"$INTERLATTICE_ROOT/scripts/setup.sh"
echo "[test] building the node (first build: ~40 min on 2 cores; later ones are incremental)" >&2
cargo build --locked -p interlattice-node
echo "[test] running the test suite" >&2
cargo test --locked --workspace --no-fail-fast "$@"
echo "[test] running the pallet benchmarks as tests" >&2
cargo test --locked -p pallet-provider-registry --features runtime-benchmarks benchmark
