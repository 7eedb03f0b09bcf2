#!/usr/bin/env bash
# The main job: set up the machine, build, and run a development chain whose state persists
# in ./data/dev (so a second run resumes the same chain). Ctrl-C stops it cleanly.
#
# Environment: INTERLATTICE_DATA (default ./data), RPC_PORT (default 9944), P2P_PORT (30333).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$INTERLATTICE_ROOT"
DATA="${INTERLATTICE_DATA:-$INTERLATTICE_ROOT/data}"
RPC_PORT="${RPC_PORT:-9944}"
P2P_PORT="${P2P_PORT:-30333}"

"$INTERLATTICE_ROOT/scripts/setup.sh"
echo "[run] building the node (first build: ~35 min on 2 cores; later ones are incremental)" >&2
# Built exactly as the test suite builds it (one feature set, one build for both).
cargo test --locked --workspace --no-run -q

for port in "$RPC_PORT" "$P2P_PORT"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		echo "[run] error: port $port on 127.0.0.1 is in use; stop what uses it or set RPC_PORT/P2P_PORT" >&2
		exit 1
	fi
done

mkdir -p "$DATA/dev"
echo "[run] chain state in $DATA/dev (delete it, or run '$INTERLATTICE_NODE purge-chain --dev --base-path $DATA/dev', to start over)" >&2
echo "[run] JSON-RPC (HTTP and WebSocket): http://127.0.0.1:$RPC_PORT  ws://127.0.0.1:$RPC_PORT" >&2
echo "[run] try: curl -s -H 'Content-Type: application/json' -d '{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"chain_getHeader\"}' http://127.0.0.1:$RPC_PORT" >&2
exec "$INTERLATTICE_NODE" --dev --base-path "$DATA/dev" --rpc-port "$RPC_PORT" --port "$P2P_PORT" \
	--prometheus-port "${PROMETHEUS_PORT:-9615}"
