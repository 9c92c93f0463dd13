#!/usr/bin/env bash
# (b) e2fsprogs' own populate, straight on the tree (no staging copy, no
# registration, no shrinking): one mkfs.ext4 -d under a frozen clock, on an
# image file sized generously beforehand (B_BYTES).
# Env: CORPUS, OUT, B_BYTES.
set -euo pipefail
truncate -s "$B_BYTES" "$OUT/image"
faketime -f "1970-01-01 00:00:01" mkfs.ext4 -q -L NIXOS_SD -U 44444444-4444-4444-8888-888888888888 \
	-d "$CORPUS/root" "$OUT/image"
