#!/usr/bin/env bash
# dVPN tunnel throughput and added latency, in one run on this machine, across three network
# namespaces (client ── agent ── internet, veth links):
#
#   1. no VPN: the client routed through the agent namespace (plain IP forwarding);
#   2. the Interlattice tunnel: release-built `vpn connect` ↔ `vpn-agent` (boringtun on TUN,
#      metering on, signed receipts fsynced by the agent before it acknowledges), with a
#      receipt every 1 MiB (credit 8 MiB) and with the defaults (every 4 MiB, credit 32 MiB);
#   3. the same tunnel with receipts only every 1 TiB (metering counters on, no receipts): the
#      cost of the payment loop is the difference between 2 and 3;
#   4. the same tunnel (default receipts) over the HTTP/3 transport (`--transport h3`: control
#      channel and WireGuard inside HTTP/3 over QUIC, data messages in QUIC datagrams) and over
#      the HTTPS transport (`--transport https`: inside HTTP/2 over TLS 1.3 over TCP);
#   5. wireguard-go on both ends (Debian package), same addresses and MTU.
#
# Each: iperf3 TCP upload and download (client ↔ internet host), and ping round-trip time.
#
#   scripts/bench-vpn.sh               # 8 s per iperf3 run
#   DURATION=20 scripts/bench-vpn.sh
#
# Needs root and /dev/net/tun. The results, with the command, are in docs/benchmarks.md.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$INTERLATTICE_ROOT"
"$INTERLATTICE_ROOT/scripts/setup.sh"
DURATION="${DURATION:-8}"
say() { echo "[bench-vpn] $*" >&2; }

[ "$(id -u)" -eq 0 ] || { say "needs root (network namespaces, TUN)"; exit 1; }
[ -c /dev/net/tun ] || { say "needs /dev/net/tun"; exit 1; }
missing=()
command -v iperf3 >/dev/null || missing+=(iperf3)
command -v wireguard-go >/dev/null || missing+=(wireguard-go)
command -v wg >/dev/null || missing+=(wireguard-tools)
command -v ping >/dev/null || missing+=(iputils-ping)
if [ ${#missing[@]} -gt 0 ]; then
	say "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

say "building (node: as the tests build it; vpn binaries: release)"
cargo test --locked --workspace --no-run >/dev/null 2>&1 || cargo test --locked --workspace --no-run
# The agent and client link the runtime for its types only: no Wasm blob needed.
SKIP_WASM_BUILD=1 cargo build --locked --release -p interlattice-vpn --bins
NODE="$CARGO_TARGET_DIR/debug/interlattice-node"
AGENT="$CARGO_TARGET_DIR/release/vpn-agent"
VPN="$CARGO_TARGET_DIR/release/vpn"

WORK="$(mktemp -d)"
TAG="b$$"
NS_C="${TAG}-client" NS_A="${TAG}-agent" NS_I="${TAG}-inet"
WGA="wga${TAG}" WGC="wgc${TAG}" # unique: wireguard-go's control sockets are host-wide
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	sleep 1
	for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
	for ns in "$NS_C" "$NS_A" "$NS_I"; do ip netns del "$ns" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT
fail() { say "$*"; tail -n 20 "$WORK"/*.log >&2 || true; cp -r "$WORK" /tmp/bench-vpn-failed 2>/dev/null || true; exit 1; }
# Foreground commands only: a background `in_ns … &` would leave $! naming a subshell, not
# the process (`ip netns exec` itself execs the program, keeping the PID).
in_ns() { local ns="$1"; shift; ip netns exec "$ns" "$@"; }

say "network: $NS_C (10.99.1.2) ── $NS_A (10.99.1.1 | 10.99.2.1) ── $NS_I (10.99.2.2)"
for ns in "$NS_C" "$NS_A" "$NS_I"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n "$NS_C" link add eth0 type veth peer name eth0 netns "$NS_A"
ip -n "$NS_A" link add eth1 type veth peer name eth0 netns "$NS_I"
ip -n "$NS_C" addr add 10.99.1.2/24 dev eth0; ip -n "$NS_C" link set eth0 up
ip -n "$NS_A" addr add 10.99.1.1/24 dev eth0; ip -n "$NS_A" link set eth0 up
ip -n "$NS_A" addr add 10.99.2.1/24 dev eth1; ip -n "$NS_A" link set eth1 up
ip -n "$NS_I" addr add 10.99.2.2/24 dev eth0; ip -n "$NS_I" link set eth0 up

in_ns "$NS_I" iperf3 -s -D --pidfile "$WORK/iperf3.pid" >/dev/null
sleep 0.5
pids+=("$(cat "$WORK/iperf3.pid")")

# One measurement: upload and download Gbit/s, ping average ms.
RESULTS=()
measure() {
	local name="$1" up down rtt
	up=$(in_ns "$NS_C" iperf3 -c 10.99.2.2 -t "$DURATION" -J | jq '.end.sum_received.bits_per_second / 1e9')
	down=$(in_ns "$NS_C" iperf3 -c 10.99.2.2 -t "$DURATION" -R -J | jq '.end.sum_received.bits_per_second / 1e9')
	rtt=$(in_ns "$NS_C" ping -c 30 -i 0.1 -q 10.99.2.2 | awk -F/ '/^rtt/ {print $5}')
	RESULTS+=("$(printf '%-40s %8.2f %8.2f %8.3f' "$name" "$up" "$down" "$rtt")")
	say "$(printf '%-40s up %6.2f Gbit/s  down %6.2f Gbit/s  rtt %s ms' "$name" "$up" "$down" "$rtt")"
}

# 1. No VPN: plain forwarding through the agent namespace.
in_ns "$NS_A" sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
ip -n "$NS_C" route add 10.99.2.0/24 via 10.99.1.1
ip -n "$NS_I" route add 10.99.1.0/24 via 10.99.2.1
measure "no VPN (IP forwarding)"
ip -n "$NS_C" route del 10.99.2.0/24 via 10.99.1.1
ip -n "$NS_I" route del 10.99.1.0/24 via 10.99.2.1

# The chain, inside the agent namespace; its RPC reachable from the client at 10.99.1.1.
say "starting a dev node"
ip netns exec "$NS_A" "$NODE" --dev --base-path "$WORK/node" --rpc-external --rpc-port 9944 --no-prometheus --no-telemetry --no-mdns \
	--node-key 0000000000000000000000000000000000000000000000000000000000000001 >"$WORK/node.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 120); do
	n=$(in_ns "$NS_A" curl -s -H 'Content-Type: application/json' -d '{"id":1,"jsonrpc":"2.0","method":"chain_getHeader"}' http://127.0.0.1:9944 | jq -r '.result.number // empty' 2>/dev/null || true)
	[ -n "$n" ] && [ "$((n))" -ge 1 ] && break
	sleep 1
done
[ -n "${n:-}" ] || fail "the dev node did not produce a block"

# Charlie (the dev VPN provider) serves from 10.99.1.1:7310.
agent_config() { # $1: receipt interval bytes, $2: credit bytes
	sed -e 's|endpoint = "127.0.0.1:7310"|endpoint = "10.99.1.1:7310"|' \
		-e 's|listen = "127.0.0.1:7310"|listen = "10.99.1.1:7310"|' \
		-e "s|receipt_interval_bytes = 4194304|receipt_interval_bytes = $1|" \
		-e "s|credit_limit_bytes = 33554432|credit_limit_bytes = $2|" \
		-e "s|receipts_dir = \"data/vpn-agent/receipts\"|receipts_dir = \"$WORK/receipts\"|" \
		-e 's|# egress_allow = \["10.99.2.0/24"\]|egress_allow = ["10.99.2.0/24"]|' \
		configs/vpn-agent.toml
}
agent_config 4194304 33554432 >"$WORK/agent.toml"
in_ns "$NS_A" "$AGENT" --config "$WORK/agent.toml" register >"$WORK/register.log" 2>&1 || fail "register failed"

vpn_run() { # $1: name, $2: receipt interval, $3: credit, $4: transport (default udp)
	local tag="$2${4:+-$4}"
	agent_config "$2" "$3" >"$WORK/agent.toml"
	ip netns exec "$NS_A" "$AGENT" --config "$WORK/agent.toml" >"$WORK/agent-$tag.log" 2>&1 &
	local agent=$!
	pids+=("$agent")
	for _ in $(seq 1 60); do grep -q "vpn-agent serving" "$WORK/agent-$tag.log" && break; sleep 0.5; done
	ip netns exec "$NS_C" "$VPN" --rpc http://10.99.1.1:9944 --state-dir "$WORK/client-$tag" connect --account //Alice --deposit 100 \
		--max-price-per-gib 1 --route 10.99.2.0/24 --keep-session --transport "${4:-udp}" >"$WORK/client-$tag.log" 2>&1 &
	local client=$!
	pids+=("$client")
	for _ in $(seq 1 120); do ip -n "$NS_C" -o addr show dev ilvpnc0 2>/dev/null | grep -q 10.77 && break; sleep 0.5; done
	in_ns "$NS_C" ping -c 3 -W 2 -q 10.99.2.2 >/dev/null || fail "no traffic through the tunnel"
	measure "$1"
	kill "$client" 2>/dev/null || say "the client had stopped: $(grep -v "^ " "$WORK/client-$tag.log" | tr "\r" "\n" | grep -v "↑" | head -n 8)"
	wait "$client" 2>/dev/null || true
	kill "$agent" 2>/dev/null || true
	wait "$agent" 2>/dev/null || true
	grep -h "receipt store\|tunnel down" "$WORK/agent-$tag.log" | tail -n 1 | sed 's/\x1b\[[0-9;]*m//g' >&2 || true
}
vpn_run "Interlattice (receipt every 1 MiB)" 1048576 8388608
vpn_run "Interlattice (default: every 4 MiB)" 4194304 33554432
vpn_run "Interlattice (no receipts: 1 TiB interval)" 1099511627776 1099511627776
vpn_run "Interlattice over HTTP/3 (every 4 MiB)" 4194304 33554432 h3
vpn_run "Interlattice over HTTPS (every 4 MiB)" 4194304 33554432 https

# 4. wireguard-go on both ends.
say "wireguard-go"
umask 077
wg genkey >"$WORK/a.key"; wg pubkey <"$WORK/a.key" >"$WORK/a.pub"
wg genkey >"$WORK/c.key"; wg pubkey <"$WORK/c.key" >"$WORK/c.pub"
wg genpsk >"$WORK/psk"
ip netns exec "$NS_A" wireguard-go -f "$WGA" >"$WORK/wga.log" 2>&1 &
pids+=($!)
ip netns exec "$NS_C" wireguard-go -f "$WGC" >"$WORK/wgc.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do ip -n "$NS_C" link show "$WGC" >/dev/null 2>&1 && ip -n "$NS_A" link show "$WGA" >/dev/null 2>&1 && break; sleep 0.1; done
in_ns "$NS_A" wg set "$WGA" private-key "$WORK/a.key" listen-port 7410 peer "$(cat "$WORK/c.pub")" preshared-key "$WORK/psk" allowed-ips 10.78.0.2/32
in_ns "$NS_C" wg set "$WGC" private-key "$WORK/c.key" peer "$(cat "$WORK/a.pub")" preshared-key "$WORK/psk" endpoint 10.99.1.1:7410 allowed-ips 10.99.2.0/24,10.78.0.1/32 persistent-keepalive 25
ip -n "$NS_A" addr add 10.78.0.1/24 dev "$WGA"; ip -n "$NS_A" link set "$WGA" mtu 1420 up
ip -n "$NS_C" addr add 10.78.0.2/24 dev "$WGC"; ip -n "$NS_C" link set "$WGC" mtu 1420 up
ip -n "$NS_C" route replace 10.99.2.0/24 dev "$WGC"
in_ns "$NS_A" nft add table ip wgbench
in_ns "$NS_A" nft add chain ip wgbench post '{ type nat hook postrouting priority srcnat; }'
in_ns "$NS_A" nft add rule ip wgbench post ip saddr 10.78.0.0/24 oifname eth1 masquerade
in_ns "$NS_C" ping -c 3 -W 2 -q 10.99.2.2 >/dev/null || fail "no traffic through wireguard-go"
measure "wireguard-go (both ends)"

echo
printf '%-40s %8s %8s %8s\n' "path" "up Gb/s" "down" "rtt ms"
for r in "${RESULTS[@]}"; do echo "$r"; done
echo "(DURATION=$DURATION s per iperf3 run; $(nproc) cores; $(date -u +%F))"
