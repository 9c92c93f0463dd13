#!/usr/bin/env bash
# (A) mkext4fs build on the structured-attrs form (.attrs.json with narHash
# and narSize), trusting its hashes: what a Nix build with __structuredAttrs
# can do when the hashes come from the store.
# Env: CORPUS, OUT, MKEXT4FS.
set -euo pipefail
exec "$MKEXT4FS" build --root "$CORPUS/root" --files "$CORPUS/files" --no-verify-hashes \
	--output "$OUT/image" --report "$OUT/report.json" "$CORPUS/.attrs.json"
