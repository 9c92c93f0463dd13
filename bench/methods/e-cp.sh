#!/usr/bin/env bash
# (e) the floor: one `cp -a` of the whole tree (hardlinks kept).
# Env: CORPUS, OUT.
set -euo pipefail
cp -a "$CORPUS/root" "$OUT/copy"
