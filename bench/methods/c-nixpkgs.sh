#!/usr/bin/env bash
# (c) nixpkgs' nixos/lib/make-ext4-fs.nix (2020 onwards) as its buildCommand
# runs it, with populateImageCommands copying one extlinux.conf into ./files.
# closureInfo is an input there, so its store-paths and registration are made
# before the clock starts (OUT/store-paths lists the corpus' host paths).
# Deviation: `2^20` where nixpkgs writes `2**20` (Debian's awk is mawk,
# which has no `**`; nixpkgs runs gawk).
# Env: CORPUS, OUT.
set -euo pipefail
cd "$OUT"
img=$OUT/image
volumeLabel=NIXOS_SD
uuid=44444444-4444-4444-8888-888888888888
(
mkdir -p ./files
mkdir -p ./files/boot && cp -r "$CORPUS/files/boot/." ./files/boot/
)

echo "Preparing store paths for image..."

# Create nix/store before copying path
mkdir -p ./rootImage/nix/store

xargs -I % cp -a --reflink=auto % -t ./rootImage/nix/store/ < "$OUT/store-paths"
(
  GLOBIGNORE=".:.."
  shopt -u dotglob

  for f in ./files/*; do
      cp -a --reflink=auto -t ./rootImage/ "$f"
  done
)

# Also include a manifest of the closures in a format suitable for nix-store --load-db
cp "$CORPUS/registration" ./rootImage/nix-path-registration

# Make a crude approximation of the size of the target image.
# If the script starts failing, increase the fudge factors here.
numInodes=$(find ./rootImage | wc -l)
numDataBlocks=$(du -s -c -B 4096 --apparent-size ./rootImage | tail -1 | awk '{ print int($1 * 1.20) }')
bytes=$((2 * 4096 * $numInodes + 4096 * $numDataBlocks))
echo "Creating an EXT4 image of $bytes bytes (numInodes=$numInodes, numDataBlocks=$numDataBlocks)"

mebibyte=$(( 1024 * 1024 ))
# Round up to the nearest mebibyte.
# This ensures whole 512 bytes sector sizes in the disk image
# and helps towards aligning partitions optimally.
if (( bytes % mebibyte )); then
  bytes=$(( ( bytes / mebibyte + 1) * mebibyte ))
fi

truncate -s $bytes $img

faketime -f "1970-01-01 00:00:01" fakeroot mkfs.ext4 -L $volumeLabel -U $uuid -d ./rootImage $img

export EXT2FS_NO_MTAB_OK=yes
# I have ended up with corrupted images sometimes, I suspect that happens when the build machine's disk gets full during the build.
if ! fsck.ext4 -n -f $img; then
  echo "--- Fsck failed for EXT4 image of $bytes bytes (numInodes=$numInodes, numDataBlocks=$numDataBlocks) ---"
  cat errorlog
  exit 1
fi

# We may want to shrink the file system and resize the image to
# get rid of the unnecessary slack here--but see
# https://github.com/NixOS/nixpkgs/issues/125121 for caveats.

# shrink to fit
resize2fs -M $img

# Add 16 MebiByte to the current_size
new_size=$(dumpe2fs -h $img | awk -F: \
  '/Block count/{count=$2} /Block size/{size=$2} END{print (count*size+16*2^20)/size}')

resize2fs $img $new_size
