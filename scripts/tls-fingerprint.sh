#!/usr/bin/env bash
# The HTTPS transport's TLS fingerprint next to a mainstream browser's (issue 18 item 6):
# the first flight of `vpn connect --transport https` (rustls with our X25519MLKEM768 group,
# printed by the `client-hello` example without any network) and headless Chromium's (Debian
# package `chromium`, caught by a TCP listener on loopback), each for a DNS name (with SNI)
# and for an IP address; their JA3 and JA4 and what differs (scripts/tls-fingerprint.py).
#
#   scripts/tls-fingerprint.sh
#
# The result and the decision it informs are in docs/decisions.md.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$INTERLATTICE_ROOT"
say() { echo "[tls-fingerprint] $*" >&2; }
command -v chromium >/dev/null || {
	say "installing chromium"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

say "building the client-hello example"
cargo build --workspace --examples >/dev/null 2>&1 || cargo build --workspace --examples
"$CARGO_TARGET_DIR/debug/examples/client-hello" www.example.com >"$WORK/ours-sni.hex"
"$CARGO_TARGET_DIR/debug/examples/client-hello" 127.0.0.1 >"$WORK/ours-ip.hex"

# Chromium's first flight, to a listener that reads it and closes.
catch_hello() { # $1: output file, $2: URL, $3: port
	python3 - "$1" "$3" <<'PY' &
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[2]))); s.listen(1); s.settimeout(30)
c, _ = s.accept(); c.settimeout(5)
data = b""
while len(data) < 5 or len(data) < 5 + int.from_bytes(data[3:5], "big"):
    chunk = c.recv(65536)
    if not chunk: break
    data += chunk
open(sys.argv[1], "w").write(data[:5 + int.from_bytes(data[3:5], "big")].hex())
PY
	local listener=$!
	sleep 0.5
	timeout 20 chromium --headless=new --no-sandbox --disable-gpu --no-first-run --user-data-dir="$WORK/profile" \
		--host-resolver-rules="MAP www.example.com 127.0.0.1" "$2" >/dev/null 2>&1 || true
	wait "$listener"
}
catch_hello "$WORK/chromium-sni.hex" "https://www.example.com:18443/" 18443
catch_hello "$WORK/chromium-ip.hex" "https://127.0.0.1:18444/" 18444
say "chromium $(chromium --version 2>/dev/null)"
python3 scripts/tls-fingerprint.py chromium="$WORK/chromium-sni.hex" interlattice="$WORK/ours-sni.hex" \
	chromium-ip="$WORK/chromium-ip.hex" interlattice-ip="$WORK/ours-ip.hex"
