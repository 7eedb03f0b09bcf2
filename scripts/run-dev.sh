#!/usr/bin/env bash
# The main job: set up the machine, build, and run the whole product locally — a development
# chain (state kept in ./data/dev, so a second run resumes it), the dCDN provider agent (Dave)
# and, where the machine allows it (root and /dev/net/tun), the dVPN provider agent (Charlie),
# both registered and staked at genesis; and a dCDN agent for Charlie too (a provider serving
# both services), which registers its service and endpoint itself; and the explorer page
# (explorer/, docs/explorer.md). Prints the endpoints, the explorer's URL and what to try next.
# Ctrl-C stops everything cleanly: the agents settle their last receipts first, then the node.
#
# Environment: INTERLATTICE_DATA (default ./data), RPC_PORT (9944), P2P_PORT (30333),
# PROMETHEUS_PORT (9615), EXPLORER_PORT (8080: the explorer page's HTTP server),
# INTERLATTICE_SKIP_BUILD=1 (binaries already built), NO_VPN=1 (chain and dCDN only). The
# agents' ports: dCDN 7320 (Dave) and 7321 (Charlie), dVPN 7310 (and 7311 for its metrics).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$INTERLATTICE_ROOT"
DATA="${INTERLATTICE_DATA:-$INTERLATTICE_ROOT/data}"
RPC_PORT="${RPC_PORT:-9944}"
P2P_PORT="${P2P_PORT:-30333}"
PROMETHEUS_PORT="${PROMETHEUS_PORT:-9615}"
EXPLORER_PORT="${EXPLORER_PORT:-8080}"
BIN="$CARGO_TARGET_DIR/debug"
say() { echo "[run] $*" >&2; }
die() { say "error: $*"; exit 1; }

"$INTERLATTICE_ROOT/scripts/setup.sh"
if [ -z "${INTERLATTICE_SKIP_BUILD:-}" ]; then
	say "building the node and the agents (first build: ~15 min on 2 cores; later ones are incremental)"
	# Built exactly as the test suite builds them (one feature set, one build for both).
	cargo test --locked --workspace --no-run -q
fi
for b in interlattice-node cdn-agent cdn vpn-agent vpn; do
	[ -x "$BIN/$b" ] || die "$BIN/$b is missing: run without INTERLATTICE_SKIP_BUILD to build it"
done

VPN=yes
if [ -n "${NO_VPN:-}" ]; then
	VPN=""
elif [ "$(id -u)" -ne 0 ]; then
	VPN=""; say "the dVPN agent needs root (TUN interface, NAT): skipping it; run as root to include it"
elif [ ! -c /dev/net/tun ]; then
	VPN=""; say "the dVPN agent needs /dev/net/tun (in a container: --device /dev/net/tun --cap-add NET_ADMIN): skipping it"
fi

ports=("$RPC_PORT" "$P2P_PORT" "$PROMETHEUS_PORT" "$EXPLORER_PORT" 7320 7321)
[ -n "$VPN" ] && ports+=(7310 7311)
for port in "${ports[@]}"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
		die "port $port on 127.0.0.1 is in use (another run-dev.sh?); stop what uses it, or set RPC_PORT/P2P_PORT/PROMETHEUS_PORT/EXPLORER_PORT"
	fi
done

mkdir -p "$DATA/dev" "$DATA/logs" "$DATA/config"
# The agents' configuration files with this run's RPC port and data folder.
sed -e "s|http://127.0.0.1:9944|http://127.0.0.1:$RPC_PORT|" -e "s|\"data/|\"$DATA/|" configs/cdn-agent.toml >"$DATA/config/cdn-agent.toml"
# Charlie serves both services: next to its dVPN agent, a dCDN agent on 7321 that registers
# only what is the dCDN's (its endpoint and the service), leaving the provider-wide fields
# (country, prices, stake) to the dVPN agent's configuration.
sed -e "s|http://127.0.0.1:9944|http://127.0.0.1:$RPC_PORT|" -e "s|\"data/cdn-agent/|\"$DATA/cdn-agent-charlie/|" \
	-e 's|"//Dave"|"//Charlie"|' -e 's|"dev:dave"|"dev:charlie"|' -e 's|127.0.0.1:7320|127.0.0.1:7321|g' \
	-e '/^country = /d' -e '/^price_per_/d' -e '/^stake = /d' configs/cdn-agent.toml >"$DATA/config/cdn-agent-charlie.toml"
sed -e "s|http://127.0.0.1:9944|http://127.0.0.1:$RPC_PORT|" -e "s|\"data/|\"$DATA/|" configs/vpn-agent.toml >"$DATA/config/vpn-agent.toml"

pids=()
names=()
stop_all() {
	trap - INT TERM EXIT
	say "stopping (the agents settle their last receipts first)…"
	# Agents first (they need the node for their final settlement), then the node.
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[$i]}" 2>/dev/null || true
		for _ in $(seq 1 300); do kill -0 "${pids[$i]}" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "${pids[$i]}" 2>/dev/null || true
		wait "${pids[$i]}" 2>/dev/null || true
		say "${names[$i]} stopped"
	done
	say "stopped; run scripts/run-dev.sh again to resume the same chain and providers"
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap 'stop_all' EXIT
start() { # name log command…
	local name="$1" log="$2"
	shift 2
	# Own session: a Ctrl-C in the terminal reaches this script only, which stops the agents
	# before the node (they settle at shutdown).
	setsid "$@" >"$log" 2>&1 &
	pids+=($!)
	names+=("$name")
}
wait_until() { # what seconds log check-command…
	local what="$1" seconds="$2" log="$3" i
	shift 3
	for ((i = 0; i < seconds * 2; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		kill -0 "${pids[-1]}" 2>/dev/null || { tail -n 20 "$log" >&2; die "$what: the process exited (log: $log)"; }
		((i % 10 == 9)) && say "  still waiting for $what…"
		sleep 0.5
	done
	tail -n 20 "$log" >&2
	die "timed out waiting for $what (log: $log)"
}
rpc() { curl -sf -H 'Content-Type: application/json' -d "{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"$1\",\"params\":${2:-[]}}" "http://127.0.0.1:$RPC_PORT"; }
has_blocks() {
	local n
	n=$(rpc chain_getHeader | jq -r '.result.number // empty') || return 1
	[ -n "$n" ] && [ "$((n))" -ge 1 ]
}

say "starting the node (chain state in $DATA/dev; log: $DATA/logs/node.log)"
start "node" "$DATA/logs/node.log" "$BIN/interlattice-node" --dev --base-path "$DATA/dev" --rpc-port "$RPC_PORT" \
	--port "$P2P_PORT" --prometheus-port "$PROMETHEUS_PORT"
wait_until "the chain to produce a block" 120 "$DATA/logs/node.log" has_blocks

say "starting the dCDN agent (Dave; log: $DATA/logs/cdn-agent.log)"
start "cdn-agent" "$DATA/logs/cdn-agent.log" "$BIN/cdn-agent" --config "$DATA/config/cdn-agent.toml"
wait_until "the dCDN agent" 60 "$DATA/logs/cdn-agent.log" curl -skf https://127.0.0.1:7320/health

say "checking the registration of Charlie's dCDN service"
"$BIN/cdn-agent" --config "$DATA/config/cdn-agent-charlie.toml" register 2>&1 | sed 's/\x1b\[[0-9;]*m//g' | grep -o "provider .*" >&2 \
	|| die "cdn-agent register failed (see above)"
say "starting Charlie's dCDN agent (log: $DATA/logs/cdn-agent-charlie.log)"
start "cdn-agent-charlie" "$DATA/logs/cdn-agent-charlie.log" "$BIN/cdn-agent" --config "$DATA/config/cdn-agent-charlie.toml"
wait_until "Charlie's dCDN agent" 60 "$DATA/logs/cdn-agent-charlie.log" curl -skf https://127.0.0.1:7321/health

if [ -n "$VPN" ]; then
	say "checking the dVPN provider's registration (Charlie)"
	"$BIN/vpn-agent" --config "$DATA/config/vpn-agent.toml" register 2>&1 | sed 's/\x1b\[[0-9;]*m//g' | grep -o "provider .*" >&2 \
		|| die "vpn-agent register failed (see above)"
	say "starting the dVPN agent (Charlie; log: $DATA/logs/vpn-agent.log)"
	start "vpn-agent" "$DATA/logs/vpn-agent.log" "$BIN/vpn-agent" --config "$DATA/config/vpn-agent.toml"
	wait_until "the dVPN agent" 60 "$DATA/logs/vpn-agent.log" grep -q "vpn-agent serving" "$DATA/logs/vpn-agent.log"
fi

# Started last, so stopped first: it only reads.
say "starting the explorer page (log: $DATA/logs/explorer.log)"
start "explorer" "$DATA/logs/explorer.log" node explorer/serve.mjs --port "$EXPLORER_PORT"
wait_until "the explorer page" 30 "$DATA/logs/explorer.log" curl -sf -o /dev/null "http://127.0.0.1:$EXPLORER_PORT/"
EXPLORER_URL="http://127.0.0.1:$EXPLORER_PORT/?rpc=ws://127.0.0.1:$RPC_PORT"

best=$(rpc chain_getHeader | jq -r '.result.number')
cat >&2 <<EOF
[run] ready at block $((best)).
  JSON-RPC (HTTP and WebSocket)  http://127.0.0.1:$RPC_PORT   ws://127.0.0.1:$RPC_PORT
  explorer (open in a browser)   $EXPLORER_URL
  dCDN agent (Dave)              https://127.0.0.1:7320   (metrics: /metrics; publish token: dev-publish-token)
  dCDN agent (Charlie)           https://127.0.0.1:7321   (Charlie serves both services)
$([ -n "$VPN" ] && echo "  dVPN agent (Charlie)           127.0.0.1:7310 (control TCP + WireGuard UDP; metrics: http://127.0.0.1:7311/metrics)" || echo "  dVPN agent                     not running (see above)")
  logs                           $DATA/logs/
Next, in another shell (README, "Walkthrough"):
  source scripts/env.sh                 # puts the binaries on PATH
  cdn providers; vpn providers
  HASH=\$(cdn publish README.md --endpoint https://127.0.0.1:7320 --token dev-publish-token)
  cdn get "\$HASH" --account //Alice -o /tmp/readme.copy
Ctrl-C stops everything.
EOF

# Run until Ctrl-C, or until one of the processes dies.
set +e
wait -n "${pids[@]}"
status=$?
for i in "${!pids[@]}"; do
	if ! kill -0 "${pids[$i]}" 2>/dev/null; then
		say "${names[$i]} exited (status $status); its log: $DATA/logs/${names[$i]}.log"
	fi
done
exit "$status"
