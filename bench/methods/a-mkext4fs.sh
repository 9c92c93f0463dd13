#!/usr/bin/env bash
# (a) mkext4fs build on the corpus' text-form closure file: it hashes every
# store path itself (the text form carries no hashes), writes the
# registration, the store and the --files content, and checks the image.
# Env: CORPUS (a corpus directory), OUT (an empty directory), MKEXT4FS;
# MKEXT4FS_ARGS, further flags (split on blanks).
set -euo pipefail
# shellcheck disable=SC2086 # MKEXT4FS_ARGS is a list of flags
exec "$MKEXT4FS" build --root "$CORPUS/root" --files "$CORPUS/files" ${MKEXT4FS_ARGS:-} \
	--output "$OUT/image" --report "$OUT/report.json" "$CORPUS/closure"
