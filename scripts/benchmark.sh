#!/usr/bin/env bash
# Runtime benchmarks: builds the node with `--features runtime-benchmarks` (a separate
# feature set, so a separate and long first build) and regenerates the pallets' weights.
#
#   scripts/benchmark.sh                  # all our pallets, writes their src/weights.rs
#   scripts/benchmark.sh pallet_pq_weights  # one pallet
#
# The results, with the exact commands, are recorded in docs/benchmarks.md.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$INTERLATTICE_ROOT"
"$INTERLATTICE_ROOT/scripts/setup.sh"
# frame-benchmarking-cli carries a test runtime for `benchmark storage`, which we do not use;
# its Wasm build cannot find its package in our workspace metadata, so it is skipped.
export SKIP_FRAME_STORAGE_ACCESS_TEST_RUNTIME_WASM_BUILD=1
echo "[bench] building the node with runtime benchmarks" >&2
cargo build --locked -p interlattice-node --features runtime-benchmarks
NODE="$CARGO_TARGET_DIR/debug/interlattice-node"

bench() { # pallet output
	echo "[bench] $1" >&2
	"$NODE" benchmark pallet --chain dev --pallet "$1" --extrinsic '*' \
		--steps 20 --repeat 10 --wasm-execution compiled --heap-pages 4096 \
		${2:+--output "$2"} --header scripts/weights-header.txt
}

# The runtime owns its measured weights: runtime/src/weights/<pallet>.rs implements each
# pallet's WeightInfo trait. Other pallets (e.g. frame_benchmarking for the baseline sr25519
# numbers) are printed only.
pallets=("${@:-pallet_provider_registry pallet_pq_weights pallet_session_escrow pallet_pq_accounts}")
for p in ${pallets[@]}; do
	case "$p" in
		pallet_provider_registry | pallet_pq_weights | pallet_session_escrow | pallet_pq_accounts) bench "$p" "runtime/src/weights/$p.rs" ;;
		*) bench "$p" ;;
	esac
done
