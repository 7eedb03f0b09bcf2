#!/usr/bin/env bash
# dCDN cache-hit throughput against nginx: the same two files (4 KiB and 64 MiB) served from
# disk by a release-built `cdn-agent` (metering on: every request names a paid session) and by
# nginx (sendfile), loaded by the same tool (wrk) on this machine, one after the other.
#
#   scripts/bench-cdn.sh              # 10 s per run
#   DURATION=30 scripts/bench-cdn.sh
#
# The results, with the command, are recorded in docs/benchmarks.md.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$INTERLATTICE_ROOT"
"$INTERLATTICE_ROOT/scripts/setup.sh"
DURATION="${DURATION:-10}"

missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v wrk >/dev/null || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
	echo "[bench-cdn] installing ${missing[*]}" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "[bench-cdn] building (node and CLI: dev profile; agent: release)" >&2
cargo build --locked -p interlattice-node -p interlattice-cdn
# The agent links the runtime for its types only: no Wasm blob needed.
SKIP_WASM_BUILD=1 cargo build --locked --release -p interlattice-cdn --bin cdn-agent
AGENT="$CARGO_TARGET_DIR/release/cdn-agent"
CDN="$CARGO_TARGET_DIR/debug/cdn"

WORK="$(mktemp -d)"
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "[bench-cdn] $*" >&2; tail -n 20 "$WORK"/*.log >&2 || true; exit 1; }
port() { # a free TCP port on 127.0.0.1
	local p
	while :; do
		p=$(shuf -i 20000-60000 -n 1)
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}
RPC=$(port); AGENT_PORT=$(port); NGINX_PORT=$(port)

echo "[bench-cdn] starting a dev node" >&2
"$INTERLATTICE_NODE" --chain dev --alice --tmp --rpc-port "$RPC" --port "$(port)" \
	--node-key "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" \
	--no-prometheus --no-telemetry --no-mdns >"$WORK/node.log" 2>&1 &
pids+=($!)
for _ in $(seq 120); do
	curl -sf -H 'Content-Type: application/json' -d '{"id":1,"jsonrpc":"2.0","method":"chain_getHeader"}' \
		"http://127.0.0.1:$RPC" | grep -q '"number":"0x[1-9a-f]' && break
	sleep 1
done || true

cat >"$WORK/agent.toml" <<EOF
[chain]
rpc = "http://127.0.0.1:$RPC"
[provider]
account = "//Dave"
[http]
listen = "127.0.0.1:$AGENT_PORT"
max_streams_per_session = 64
[cache]
dir = "$WORK/cache"
max_bytes = 1073741824
[publish]
tokens = ["bench"]
[payment]
credit_limit_bytes = 1152921504606846976
receipts_dir = "$WORK/receipts"
settle_interval_secs = 3600
EOF
RUST_LOG=warn "$AGENT" --config "$WORK/agent.toml" >"$WORK/agent.log" 2>&1 &
pids+=($!)
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$AGENT_PORT/health" >/dev/null && break; sleep 0.5; done

head -c 4096 /dev/urandom >"$WORK/small"
head -c $((64 << 20)) /dev/urandom >"$WORK/large"
SMALL=$("$CDN" publish "$WORK/small" --endpoint "http://127.0.0.1:$AGENT_PORT" --token bench) || fail "publish failed"
LARGE=$("$CDN" publish "$WORK/large" --endpoint "http://127.0.0.1:$AGENT_PORT" --token bench) || fail "publish failed"
# A paid session with a deposit that covers every byte of the runs (1000 LAT = 5 TiB at Dave's price).
SESSION=$("$CDN" get "$SMALL" --rpc "http://127.0.0.1:$RPC" --state-dir "$WORK/client" --account //Alice \
	--deposit 1000 --endpoint "http://127.0.0.1:$AGENT_PORT" -o "$WORK/small.out" | awk '{print $NF}') || fail "cannot open a session"
echo "[bench-cdn] session $SESSION" >&2

mkdir -p "$WORK/www/content" "$WORK/nginx"
cp "$WORK/small" "$WORK/www/content/$SMALL"
cp "$WORK/large" "$WORK/www/content/$LARGE"
# nginx's workers run as an unprivileged user: let them read the files.
chmod 755 "$WORK"
chmod -R a+rX "$WORK/www"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 1024; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	client_body_temp_path $WORK/nginx/body;
	proxy_temp_path $WORK/nginx/proxy;
	fastcgi_temp_path $WORK/nginx/fastcgi;
	uwsgi_temp_path $WORK/nginx/uwsgi;
	scgi_temp_path $WORK/nginx/scgi;
	server {
		listen 127.0.0.1:$NGINX_PORT;
		root $WORK/www;
		location /content/ {
			default_type application/octet-stream;
			add_header Cache-Control "public, max-age=31536000, immutable";
		}
	}
}
EOF
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" -g 'daemon off;' &
pids+=($!)
sleep 1

check() { # url [header]: the server answers 200 with the whole object
	local got
	got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' ${2:+-H "$2"} "$1")
	[ "${got%% *}" = 200 ] || fail "$1 answers $got"
	echo "${got#* }"
}
run() { # name connections url [header]
	local out
	if [ -n "${4:-}" ]; then
		out=$(wrk -t2 -c"$2" -d"${DURATION}s" -H "$4" "$3")
	else
		out=$(wrk -t2 -c"$2" -d"${DURATION}s" "$3")
	fi
	echo "$out" >"$WORK/wrk-$1.txt"
	printf '%-22s %12s req/s %12s/s\n' "$1" "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
		"$(awk '/Transfer\/sec/ {print $2}' <<<"$out")"
}
echo "[bench-cdn] wrk -t2, ${DURATION}s per run" >&2
TOKEN=$("$CDN" token --rpc "http://127.0.0.1:$RPC" --state-dir "$WORK/client" --session "$SESSION" \
	--endpoint "http://127.0.0.1:$AGENT_PORT") || fail "cannot get a bearer token"
HEADER="Authorization: Bearer $TOKEN"
for object in "$SMALL" "$LARGE"; do
	a=$(check "http://127.0.0.1:$AGENT_PORT/content/$object" "$HEADER")
	n=$(check "http://127.0.0.1:$NGINX_PORT/content/$object")
	[ "$a" = "$n" ] || fail "the agent serves $a bytes, nginx $n"
done
run "agent 4KiB c=32" 32 "http://127.0.0.1:$AGENT_PORT/content/$SMALL" "$HEADER"
run "nginx 4KiB c=32" 32 "http://127.0.0.1:$NGINX_PORT/content/$SMALL"
run "agent 64MiB c=4" 4 "http://127.0.0.1:$AGENT_PORT/content/$LARGE" "$HEADER"
run "nginx 64MiB c=4" 4 "http://127.0.0.1:$NGINX_PORT/content/$LARGE"
echo "[bench-cdn] agent metrics:" >&2
curl -s "http://127.0.0.1:$AGENT_PORT/metrics" | grep -E '^interlattice_cdn_(bytes_served_total|requests_total|payment_required_total)' >&2
