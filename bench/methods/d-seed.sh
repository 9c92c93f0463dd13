#!/usr/bin/env bash
# (d) the 2015 seed of nixpkgs' make-ext4-fs.nix (nixpkgs commit df86813d9727,
# "nixos: Add derivations for SD card installation images on ARM"): size
# estimate, mkfs.ext4, then one `find | while read` loop printing
# cd/mkdir/write/symlink/sif lines into one debugfs. SEED_AS_WRITTEN=1 runs
# the loop exactly as written; otherwise find separates entries with NUL and
# every name is quoted for debugfs ("" inside quotes is a literal "), which
# is all it takes to survive names with blanks and quotes.
# The seed's paths are /nix/store/...: in a private mount namespace the
# corpus' nix directory is bound over /nix, so find prints the very paths
# the image gets (needs root; a machine without /nix gets an empty /nix
# for the run). Deviations: the registration is made before
# the clock starts (the seed ran a Perl helper), `grep -E` for `egrep`,
# `exit 1` for `return 1`.
# Env: CORPUS, OUT; OUT/nix-path-registration.
set -e
if [ -z "${SEED_NS:-}" ]; then
	# A machine without /nix gets the mount point for the run.
	made=
	if ! [ -e /nix ]; then
		mkdir /nix
		made=1
	fi
	status=0
	unshare -m --propagation private env SEED_NS=1 bash "$0" "$@" || status=$?
	if [ -n "$made" ]; then
		rmdir /nix
	fi
	exit "$status"
fi
mount --bind "$CORPUS/root/nix" /nix
cd "$OUT"
out=$OUT/image
volumeLabel=NIXOS_SD
storePaths=$(cat "$CORPUS/store-paths")

# Make a crude approximation of the size of the target image.
# If the script starts failing, increase the fudge factors here.
numInodes=$(find $storePaths | wc -l)
numDataBlocks=$(du -c -B 4096 --apparent-size $storePaths | awk '$2 == "total" { print int($1 * 1.03) }')
bytes=$((2 * 4096 * $numInodes + 4096 * $numDataBlocks))
echo "Creating an EXT4 image of $bytes bytes (numInodes=$numInodes, numDataBlocks=$numDataBlocks)"

truncate -s $bytes $out
faketime "1970-01-01 00:00:00" mkfs.ext4 -L ${volumeLabel} -U 44444444-4444-4444-8888-888888888888 $out

as_written() {
	# XXX: This explodes in exciting ways if anything in /nix/store has a space in it.
	find $storePaths -printf '%y %f %h %m\n'| while read -r type file dir perms; do
		# echo "TYPE=$type DIR=$dir FILE=$file PERMS=$perms" >&2

		echo "cd $dir"
		case $type in
			d)
				echo "mkdir $file"
				echo sif $file mode $((040000 | 0$perms)) # magic constant is __S_IFDIR
				;;
			f)
				echo "write $dir/$file $file"
				echo sif $file mode $((0100000 | 0$perms)) # magic constant is __S_IFREG
				;;
			l)
				echo "symlink $file $(readlink "$dir/$file")"
				;;
			*)
				echo "Unknown entry: $type $dir $file $perms" >&2
				exit 1
				;;
		esac

		echo sif $file gid 30000 # chgrp to nixbld
	done
}

quoted() {
	find $storePaths -printf '%y %m %h/%f\0' | while IFS= read -r -d '' line; do
		type=${line%% *}
		rest=${line#* }
		perms=${rest%% *}
		path=${rest#* }
		dir=${path%/*}
		file=${path##*/}
		q='"'
		qdir=\"${dir//$q/$q$q}\"
		qfile=\"${file//$q/$q$q}\"

		echo "cd $qdir"
		case $type in
			d)
				echo "mkdir $qfile"
				echo "sif $qfile mode $((040000 | 0$perms))" # magic constant is __S_IFDIR
				;;
			f)
				echo "write \"${path//$q/$q$q}\" $qfile"
				echo "sif $qfile mode $((0100000 | 0$perms))" # magic constant is __S_IFREG
				;;
			l)
				target=$(readlink "$path")
				echo "symlink $qfile \"${target//$q/$q$q}\""
				;;
			*)
				echo "Unknown entry: $type $path $perms" >&2
				exit 1
				;;
		esac

		echo "sif $qfile gid 30000" # chgrp to nixbld
	done
}

# Populate the image contents by piping a bunch of commands to the `debugfs` tool from e2fsprogs.
(
	echo write nix-path-registration nix-path-registration
	echo mkdir nix
	echo cd /nix
	echo mkdir store
	if [ "${SEED_AS_WRITTEN:-}" = 1 ]; then as_written; else quoted; fi
) | faketime "1970-01-01 00:00:00" debugfs -w $out -f /dev/stdin > errorlog 2>&1

# The debugfs tool doesn't terminate on error nor exit with a non-zero status. Check manually.
if grep -E -q 'Could not allocate|File not found' errorlog; then
	cat errorlog
	echo "--- Failed to create EXT4 image of $bytes bytes (numInodes=$numInodes, numDataBlocks=$numDataBlocks) ---"
	exit 1
fi
