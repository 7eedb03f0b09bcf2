#!/usr/bin/env bash
# Installs everything Interlattice needs to build and test, idempotently.
#
# - Debian packages: the `rustc-web` toolchain (used only for the runtime's Wasm), lld, protoc,
#   clang (bindgen), and the tools the end-to-end tests use.
# - A precompiled `wasm32v1-none` core/alloc for that toolchain (rustup cannot download
#   targets on these machines; see docs/toolchain.md).
# - The rustup toolchain link `debian-web` that substrate-wasm-builder runs.
#
# Safe to run again: every step checks before it acts. Needs root on Debian.
set -euo pipefail

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

if [ ! -f /etc/debian_version ]; then
	die "this script supports Debian (bookworm) only. Elsewhere install: a Rust toolchain with the
wasm32v1-none target (rustup target add wasm32v1-none), protoc, clang/libclang, lld; then
export WASM_BUILD_TOOLCHAIN to that toolchain's name."
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || die "run as root (or install sudo): packages must be installed"
	SUDO="sudo"
fi

# The toolchain: what the build needs.
PACKAGES=(rustc-web cargo-web rust-web-src lld-22 protobuf-compiler clang libclang-dev
	libssl-dev pkg-config)
missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The programs the scripts, tests and benchmarks run (scripts/programs.txt): their package
# when the program is missing (a machine may have it from elsewhere, e.g. Node.js).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
while read -r program package; do
	case "$program" in '' | '#'*) continue ;; esac
	type -P "$program" >/dev/null 2>&1 && continue
	case " ${missing[*]} " in *" $package "*) ;; *) missing+=("$package") ;; esac
done <"$here/programs.txt"
if [ ${#missing[@]} -gt 0 ]; then
	log "installing Debian packages: ${missing[*]}"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
else
	log "Debian packages present"
fi

command -v rustup >/dev/null || die "rustup not found: install the stable Rust toolchain with rustup first"
# rustfmt and clippy: scripts/lint.sh (CI) needs them; rustup's default profile has them.
for component in rustfmt clippy; do
	rustup component list --installed 2>/dev/null | grep -q "^$component" ||
		rustup component add "$component" >/dev/null 2>&1 ||
		die "the Rust component $component is missing and cannot be installed: rustup component add $component"
done

# The precompiled Wasm core must come from the exact compiler that uses it: a stamp records it.
WASM_LIB=/usr/lib/rustlib/wasm32v1-none/lib
STAMP="$WASM_LIB/.interlattice-rustc-version"
want="$(/usr/bin/rustc --version)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
	log "building core/alloc for wasm32v1-none with $want (once, ~1 min)"
	tmp="$(mktemp -d)"
	trap 'rm -rf "$tmp"' EXIT
	mkdir -p "$tmp/src"
	cat > "$tmp/Cargo.toml" <<'TOML'
[package]
name = "wasm-core-builder"
version = "0.0.0"
edition = "2021"
[lib]
crate-type = ["rlib"]
[profile.release]
panic = "abort"
TOML
	echo '#![no_std]' > "$tmp/src/lib.rs"
	(cd "$tmp" && RUSTFLAGS="-C embed-bitcode=yes" RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$tmp/target" RUSTC=/usr/bin/rustc \
		/usr/bin/cargo build -q --release --target wasm32v1-none -Zbuild-std=core,alloc)
	$SUDO mkdir -p "$WASM_LIB"
	$SUDO rm -f "$WASM_LIB"/lib{core,alloc,compiler_builtins}-*.rlib
	$SUDO cp "$tmp"/target/wasm32v1-none/release/deps/lib{core,alloc,compiler_builtins}-*.rlib "$WASM_LIB/"
	echo "$want" | $SUDO tee "$STAMP" >/dev/null
	# Objects built against the old core must not be reused.
	target_dir="${CARGO_TARGET_DIR:-$HOME/.cache/interlattice/target}"
	rm -rf "$target_dir"/*/wbuild
else
	log "wasm32v1-none core present ($want)"
fi

if ! rustup toolchain list | grep -q '^debian-web'; then
	log "linking rustup toolchain debian-web -> /usr"
	rustup toolchain link debian-web /usr
fi
# npm packages, at the versions each package-lock.json pins; again only when the lockfile changed
# since the last install (a copy of it in node_modules says which was installed).
npm_ci() { # directory (under the repository) what
	local dir="$here/../$1" what="$2"
	if ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.interlattice-installed-lock" 2>/dev/null; then
		log "installing $what (npm ci in $1)"
		(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
		cp "$dir/package-lock.json" "$dir/node_modules/.interlattice-installed-lock"
	else
		log "$what present"
	fi
}
# @polkadot/api, for the test that runs unmodified polkadot.js against a node
# (tests/tests/polkadot_js.rs); puppeteer-core, which drives Debian's Chromium through the
# explorer page (tests/tests/explorer.rs).
npm_ci tests/js "the JavaScript test dependencies"
# The explorer page's map and country data and topojson-client (explorer/serve.mjs serves
# them under /vendor/; docs/explorer.md).
npm_ci explorer "the explorer's map data"
log "done"
