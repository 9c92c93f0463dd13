#!/usr/bin/env bash
# Rebuilds the sample closure with real Nix (sample.nix) and writes it to
# OUTDIR (default: this directory):
#   root/nix/store/...   the store paths of hello's closure, copied from /nix/store
#   closure              the text-form graph Nix wrote for exportReferencesGraph
#   .attrs.json          the structured-attrs graph, with Nix's narHash/narSize
# Git keeps no file modes but the executable bit, so the copies are written
# with the modes a checkout gets (0644/0755, directories 0755); users of the
# sample set the store's modes (0444/0555, directories 0555) on a copy.
#
# Needs nix-build and nix-store (Debian's nix-bin is enough) run as root in
# single-user mode, and an x86_64-linux machine.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/conf"
printf 'build-users-group =\nsandbox = false\nsubstituters =\n' >"$tmp/conf/nix.conf"
export NIX_CONF_DIR="$tmp/conf" NIX_USER_CONF_FILES="$tmp/conf/nix.conf"
unset NIX_REMOTE NIX_PATH

# nix-build, retried once when Nix 2.8 kills a builder that was just exiting.
build() {
	if ! nix-build "$here/sample.nix" --out-link "$tmp/result-$1" -A "$1" 2>"$tmp/log" >"$tmp/out"; then
		if ! grep -q 'signal 9' "$tmp/log"; then
			cat "$tmp/log" >&2
			return 1
		fi
		nix-build "$here/sample.nix" --out-link "$tmp/result-$1" -A "$1" >"$tmp/out"
	fi
	cat "$tmp/out"
}

hello=$(build hello)
graph_text=$(build graphText)
graph_json=$(build graphJSON)

rm -rf "$out/root"
mkdir -p "$out/root/nix/store"
for p in $(nix-store -qR "$hello"); do
	cp -a "$p" "$out/root/nix/store/"
done
find "$out/root" -type d -exec chmod 0755 {} +
find "$out/root" -type f -perm -u+x -exec chmod 0755 {} +
find "$out/root" -type f ! -perm -u+x -exec chmod 0644 {} +
install -m 0644 "$graph_text/closure" "$out/closure"
install -m 0644 "$graph_json/attrs.json" "$out/.attrs.json"
echo "sample: $(nix-store -qR "$hello" | wc -l) store paths, $(find "$out/root/nix/store" | wc -l) entries in $out" >&2
