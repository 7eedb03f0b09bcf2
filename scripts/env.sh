# Sourced by every project script: one place for the build environment.
# shellcheck shell=bash
INTERLATTICE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export INTERLATTICE_ROOT
# One target directory outside the clone, so that every build (and CI's) is incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/interlattice/target}"
export WASM_BUILD_TOOLCHAIN="${WASM_BUILD_TOOLCHAIN:-debian-web}"
# --allow-undefined: host functions are undefined imports by design (docs/toolchain.md).
# --remap-path-prefix: the Wasm must not depend on where the repository or the cargo registry
# sit on disk, so that the committed chain specs (which embed it) are reproducible.
CARGO_HOME_DIR="${CARGO_HOME:-$HOME/.cargo}"
export WASM_BUILD_RUSTFLAGS="-C link-arg=--allow-undefined --remap-path-prefix=$INTERLATTICE_ROOT=/interlattice --remap-path-prefix=$CARGO_HOME_DIR=/cargo"
# Compact (wasm-opt) and compress the runtime even in dev builds: the chain specs embed it, and
# a smaller blob compiles faster at every node start.
export WASM_BUILD_TYPE="${WASM_BUILD_TYPE:-release}"
# The target directory is outside the workspace: tell the Wasm builder where Cargo.lock is.
export WASM_BUILD_WORKSPACE_HINT="$INTERLATTICE_ROOT"
# The node binary every script and end-to-end test uses.
export INTERLATTICE_NODE="$CARGO_TARGET_DIR/debug/interlattice-node"
# The workspace's binaries (node, agents, clients, pq-key) on PATH, for people who source this.
case ":$PATH:" in *":$CARGO_TARGET_DIR/debug:"*) ;; *) export PATH="$CARGO_TARGET_DIR/debug:$PATH" ;; esac
