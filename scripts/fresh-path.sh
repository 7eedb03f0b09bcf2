#!/usr/bin/env bash
# Prints a PATH that holds only what a fresh machine has after scripts/setup.sh: the programs
# of Debian's essential and required packages (every Debian system has them), the programs
# listed in scripts/programs.txt (setup installs them), the Rust toolchain and the workspace's
# own binaries. scripts/test.sh runs the test suite with it: a test, script or walkthrough
# step that calls a program setup does not install fails here exactly as on a fresh machine
# ("No such file or directory"), instead of passing on a machine that happens to have it.
set -euo pipefail
source "$(dirname "$0")/env.sh"
dir="$CARGO_TARGET_DIR/fresh-path"
rm -rf "$dir"
mkdir -p "$dir"
link() { [ -e "$dir/$(basename "$1")" ] || ln -s "$1" "$dir/$(basename "$1")"; }
# The base system.
for package in $(dpkg-query -W -f='${Package} ${Priority} ${Essential}\n' | awk '$2 == "required" || $3 == "yes" { print $1 }'); do
	while read -r file; do
		case "$file" in /bin/* | /sbin/* | /usr/bin/* | /usr/sbin/*) [ -x "$file" ] && [ ! -d "$file" ] && link "$file" ;; esac
	done < <(dpkg -L "$package" 2>/dev/null)
done
# Names given by Debian's alternatives (awk -> mawk, which -> which.debianutils, …) for
# programs allowed above.
for alt in /usr/bin/* /usr/sbin/*; do
	case "$(readlink "$alt")" in /etc/alternatives/*) ;; *) continue ;; esac
	target="$(readlink -f "$alt")"
	[ -e "$dir/$(basename "$target")" ] && [ "$(readlink -f "$dir/$(basename "$target")")" = "$target" ] && link "$alt"
done
# What setup installs for the scripts and tests.
while read -r program _; do
	case "$program" in '' | '#'*) continue ;; esac
	found="$(type -P "$program")" || { echo "fresh-path: $program is not installed: run scripts/setup.sh" >&2; exit 1; }
	link "$found"
done <"$INTERLATTICE_ROOT/scripts/programs.txt"
cargo_bin="$(dirname "$(command -v cargo)")"
echo "$dir:$cargo_bin:$CARGO_TARGET_DIR/debug"
