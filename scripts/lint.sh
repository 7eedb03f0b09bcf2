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
