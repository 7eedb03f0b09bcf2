#!/usr/bin/env bash
# Formatting and lints, as CI enforces them: `cargo fmt --check` (rustfmt.toml) and clippy on
# every crate and target with warnings as errors ([workspace.lints] in Cargo.toml).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$INTERLATTICE_ROOT"
# The build needs what setup installs (protoc, clang, the Wasm toolchain, rustfmt, clippy).
"$INTERLATTICE_ROOT/scripts/setup.sh"
echo "[lint] cargo fmt --check" >&2
cargo fmt --all --check
echo "[lint] cargo clippy --workspace --all-targets -- -D warnings" >&2
cargo clippy --locked --workspace --all-targets -- -D warnings
# The client libraries and the `vpn`/`cdn` commands build without the agent feature (issue
# 17): linted in that configuration, and none of the agents' own dependencies may come back
# into their direct dependencies.
echo "[lint] clients without the agent feature" >&2
cargo clippy --locked -p interlattice-vpn -p interlattice-cdn --no-default-features --lib --bins -- -D warnings
for crate in interlattice-agent-core interlattice-vpn interlattice-cdn; do
	agent_only=$(cargo tree --locked -p "$crate" --no-default-features -e normal --depth 1 --prefix none |
		grep -E '^(prometheus|substrate-prometheus-endpoint|toml) ' | sort -u || true)
	if [[ -n "$agent_only" ]]; then
		echo "[lint] $crate without the agent feature still depends on: $agent_only" >&2
		exit 1
	fi
done
