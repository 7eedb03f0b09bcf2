#!/usr/bin/env bash
# Regenerates chain-spec/*.json (plain and raw) from the runtime's genesis presets.
# Never edit those files by hand; tests/tests/chain_spec.rs fails when they drift.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$INTERLATTICE_ROOT"
echo "[chain-spec] building the node" >&2
# Built exactly as the test suite builds it (one feature set, one build for both).
cargo test --locked --workspace --no-run -q
for preset in development local_testnet testnet; do
	"$INTERLATTICE_NODE" export-chain-spec --chain "$preset" --output "chain-spec/$preset.json" >/dev/null
	"$INTERLATTICE_NODE" export-chain-spec --chain "$preset" --raw --output "chain-spec/$preset-raw.json" >/dev/null
	echo "[chain-spec] wrote chain-spec/$preset.json and chain-spec/$preset-raw.json" >&2
done
