#!/usr/bin/env bash
# The benchmark of issue 5: builds the same corpus (a NixOS-like closure from
# ./bench/corpus) into an ext4 image with
#   (a) mkext4fs build                     bench/methods/a-mkext4fs.sh
#   (b) mkfs.ext4 -d straight on the tree  bench/methods/b-mkfs.sh
#   (c) today's nixpkgs make-ext4-fs.nix   bench/methods/c-nixpkgs.sh
#   (d) the 2015 seed's debugfs pipeline   bench/methods/d-seed.sh (names quoted)
#   (e) cp -a of the tree, the floor       bench/methods/e-cp.sh
#   (r) reading the tree with tar          bench/methods/r-tar.sh
# interleaved, several runs each, with GNU time (wall, user, sys, peak RSS of
# the biggest process), then a scaling series (a and b on corpora of N names,
# and on one directory of N entries), and prints a Markdown table for the
# README. The page cache is warm (the corpus is read before every run, as
# the kernel may reclaim pages it has not used for a while; nothing is
# dropped); every run starts after a sync.
#
# Usage: bench/run.sh [--quick] [--scale S] [--runs N] [--seed N] [--work DIR]
#                     [--methods abcder] [--no-series] [--series-runs N]
#                     [--series-methods ab]
#                     [--perf] [--keep]
#   --quick        scale 0.1, one run, a tiny series: a smoke test of about a minute
#   --work DIR     corpora, images and results (default bench/out; needs about
#                  4x the corpus size free, 1.5 GB per unit of scale)
#   --methods      which of a A b c d e r to run (A: mkext4fs on .attrs.json,
#                  trusting its hashes); default abcder
#   --series-methods  which of a b the series runs (default ab; (b) takes
#                  minutes on the 80k-entry directory)
#   --perf         also record one run of (a) with perf and keep the report
#   --keep         keep the series corpora (the main corpus is always kept
#                  and reused by the next run with the same scale and seed)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=$repo/bench/out
scale=1
runs=3
seed=1
methods=abcder
series=1
series_runs=3
series_inodes="25000 50000 100000 200000"
series_flat="0 5000 20000 80000"
series_methods=ab
perf=0
keep=0

while [ $# -gt 0 ]; do
	case $1 in
	--quick)
		scale=0.1 runs=1 series_runs=1
		series_inodes="5000 10000" series_flat="0 1000 4000"
		;;
	--scale) scale=$2 && shift ;;
	--runs) runs=$2 && shift ;;
	--seed) seed=$2 && shift ;;
	--work) work=$2 && shift ;;
	--methods) methods=$2 && shift ;;
	--no-series) series=0 ;;
	--series-runs) series_runs=$2 && shift ;;
	--series-methods) series_methods=$2 && shift ;;
	--perf) perf=1 ;;
	--keep) keep=1 ;;
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "bench/run.sh: unknown argument $1 (see --help)" >&2
		exit 2
		;;
	esac
	shift
done

. "$repo/scripts/ensure-tools.sh"
ensure_tools "${BUILD_TOOLS[@]}" resize2fs:e2fsprogs dumpe2fs:e2fsprogs fakeroot:fakeroot unshare:util-linux
if ! [ -x /usr/bin/time ]; then
	ensure_tools /usr/bin/time:time
fi
export PATH="$PATH:/usr/sbin:/sbin" TZ=UTC LC_ALL=C
if [ "$(id -u)" != 0 ] && [[ $methods == *d* ]]; then
	echo "bench/run.sh: (d) needs root (it binds the corpus over /nix in a private mount namespace); skipping it" >&2
	methods=${methods//d/}
fi

mkdir -p "$work"
work=$(cd "$work" && pwd)
bin=$work/bin
results=$work/results
rm -rf "$results" "$work/run"
mkdir -p "$bin" "$results/logs"

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

log "building mkext4fs and the benchmark tools"
(cd "$repo" && go build -o "$bin/mkext4fs" ./cmd/mkext4fs && go build -o "$bin/corpus" ./bench/corpus &&
	go build -o "$bin/tabulate" ./bench/tabulate)
export MKEXT4FS=$bin/mkext4fs
if ! "$MKEXT4FS" build --help >/dev/null 2>&1; then
	log "mkext4fs has no build command yet: skipping (a)"
	echo "(a) skipped: this mkext4fs has no build command" >>"$results/notes.txt"
	methods=${methods//a/}
	methods=${methods//A/}
	series_methods=${series_methods//a/}
fi

{
	echo "date=$(date -u +%Y-%m-%dT%H:%MZ)"
	echo "nproc=$(nproc)"
	echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
	echo "memory=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
	echo "kernel=$(uname -sr)"
	echo "e2fsprogs=$(mke2fs -V 2>&1 | sed -n '1s/^mke2fs \([^ ]*\).*/\1/p')"
	echo "go=$(go env GOVERSION)"
	echo "mkext4fs=$("$MKEXT4FS" version 2>/dev/null | sed 's/^mkext4fs //')"
	echo "mkext4fs_commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
	echo "faketime=$(dpkg-query -W -f '${Version}' faketime 2>/dev/null || echo unknown)"
	echo "filesystem=$(df -T "$work" | awk 'NR==2 {print $2}')"
	echo "cache=warm"
	echo "runs=$runs"
	echo "series_runs=$series_runs"
} >"$results/machine.env"

# corpus DIR ARGS...: generates a corpus unless DIR already holds one.
corpus() {
	local dir=$1
	shift
	if [ -f "$dir/corpus.env" ]; then
		log "reusing corpus $dir"
		return
	fi
	log "generating corpus $dir ($*)"
	"$bin/corpus" -out "$dir" -force "$@"
}

# free_space_for DIR: fails when the work directory cannot take three copies
# of the corpus and an image (cp -a copy, nixpkgs' staging copy, images).
free_space_for() {
	local bytes avail
	bytes=$(sed -n 's/^bytes=//p' "$1/corpus.env")
	avail=$(df -B1 --output=avail "$work" | tail -1)
	if [ "$avail" -lt $((bytes * 4)) ]; then
		log "not enough free space in $work: $avail bytes free, want $((bytes * 4))"
		return 1
	fi
}

# faketime's wrapper leaves /dev/shm/faketime_shm_PID and sem.faketime_sem_PID
# behind when it is killed, and a later wrapper given the same PID fails
# ("sem_open: File exists"): remove those of processes that are gone.
clean_faketime() {
	local f
	for f in /dev/shm/faketime_shm_* /dev/shm/sem.faketime_sem_*; do
		[ -e "$f" ] || continue
		[ -d "/proc/${f##*_}" ] || rm -f "$f"
	done
}

# measure SET LABEL METHOD RUN CORPUS: runs one method once, timed, and appends
# a line to results/times.tsv.
measure() {
	local set=$1 label=$2 m=$3 run=$4 c=$5 script out tf load status=0 image_bytes=- extra=""
	script=$(ls "$repo"/bench/methods/"$m"-*.sh)
	out=$work/run/$set-$label-$m-$run
	rm -rf "$out"
	mkdir -p "$out"
	# What the real pipelines get as inputs, made before the clock starts:
	# closureInfo's store-paths (host paths for (c)) and the registration.
	sed "s|^|$c/root|" "$c/store-paths" >"$out/store-paths"
	[ -f "$c/registration" ] && cp "$c/registration" "$out/nix-path-registration"
	local entries bytes
	entries=$(sed -n 's/^entries=//p' "$c/corpus.env")
	bytes=$(sed -n 's/^bytes=//p' "$c/corpus.env")
	# (b)'s image: generous, with an inode for every name at mke2fs' default
	# 16 KiB per inode.
	local b_bytes=$(((bytes + entries * 4096) * 13 / 10 + (64 << 20)))
	[ "$b_bytes" -lt $((entries * 16384 * 12 / 10)) ] && b_bytes=$((entries * 16384 * 12 / 10))
	b_bytes=$(((b_bytes + (1 << 20) - 1) >> 20 << 20))
	# Memory reclaim (such as DAMON's) may have dropped pages of the corpus
	# since the last run: every method starts from a warm cache.
	tar -C "$c/root" -cf - . | cat >/dev/null
	clean_faketime
	sync
	load=$(cut -d' ' -f1 /proc/loadavg)
	tf=$out.time
	CORPUS=$c OUT=$out B_BYTES=$b_bytes MKEXT4FS_ARGS=${MKEXT4FS_ARGS:-} /usr/bin/time -o "$tf" -f '%e %U %S %M %x' \
		timeout 3h bash "$script" >"$results/logs/$set-$label-$m-$run.log" 2>&1 || status=$?
	local wall user sys rss code
	read -r wall user sys rss code < <(tail -1 "$tf")
	if [ -f "$out/image" ]; then
		image_bytes=$(stat -c %s "$out/image")
		if [ "$run" = 1 ] && [ "$code" = 0 ]; then
			# Once per method and corpus: is the result a clean filesystem,
			# and how many inodes does it use?
			if e2fsck -fn "$out/image" >"$results/logs/$set-$label-$m-fsck.log" 2>&1; then
				extra="fsck clean"
			else
				extra="fsck NOT clean"
			fi
			local header
			header=$(dumpe2fs -h "$out/image" 2>/dev/null)
			extra="$extra, $(awk -F: '/^Inode count/ {n=$2} /^Free inodes/ {f=$2} END {printf "%d inodes used", n-f}' <<<"$header")"
			# The free space the image keeps, for comparing sizes.
			awk -F: '
				/^Block size/ {print "block_size=" $2+0}
				/^Block count/ {print "blocks=" $2+0}
				/^Free blocks/ {print "free_blocks=" $2+0}
				/^Reserved block count/ {print "reserved_blocks=" $2+0}' \
				<<<"$header" >"$results/space-$set-$label-$m.env"
		fi
	fi
	[ -f "$out/report.json" ] && cp "$out/report.json" "$results/report-$set-$label-$m-$run.json"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$set" "$label" "$m" "$run" \
		"$wall" "$user" "$sys" "$rss" "$image_bytes" "$code" "$load" "$extra" >>"$results/times.tsv"
	log "$set $label ($m) run $run: ${wall}s wall, ${user}s user, ${sys}s sys, ${rss} KiB, exit $code${extra:+, $extra}"
	rm -rf "$out"
	sync
}

printf 'set\tlabel\tmethod\trun\twall\tuser\tsys\tmaxrss_kib\timage_bytes\texit\tload1\tcheck\n' >"$results/times.tsv"

# The main comparison.
main=$work/corpus-s$scale-seed$seed
corpus "$main" -scale "$scale" -seed "$seed"
cp "$main/corpus.env" "$results/corpus-main-main.env"
free_space_for "$main"
log "warming the page cache"
tar -C "$main/root" -cf - . | cat >/dev/null
for run in $(seq 1 "$runs"); do
	for m in $(echo "$methods" | grep -o .); do
		measure main main "$m" "$run" "$main"
	done
	# (a) leaves its image to the page cache; (b) and (c) end with the
	# tools' fsync. (a) with --sync forces the image to the disk too.
	if [[ $methods == *a* ]]; then
		MKEXT4FS_ARGS="--sync" measure main sync a "$run" "$main"
	fi
done

# Image sizes for the same free space: (a) keeps --headroom free beyond
# the blocks reserved for root, (c) keeps what resize2fs -M leaves plus
# 16 MiB, reserve included. One run of (a) with as many free blocks as
# (c)'s image has, none of them reserved, makes the sizes comparable.
if [[ $methods == *a* ]] && [ -f "$results/space-main-main-c.env" ]; then
	c_free=$(sed -n 's/^free_blocks=//p' "$results/space-main-main-c.env")
	c_bs=$(sed -n 's/^block_size=//p' "$results/space-main-main-c.env")
	MKEXT4FS_ARGS="--reserved-percent 0 --headroom $((c_free * c_bs))" measure main samefree a 1 "$main"
fi

# The seed's pipeline exactly as written: how far does it get?
if [[ $methods == *d* ]]; then
	out=$work/run/d-as-written
	rm -rf "$out" && mkdir -p "$out"
	cp "$main/registration" "$out/nix-path-registration"
	status=0
	clean_faketime
	CORPUS=$main OUT=$out SEED_AS_WRITTEN=1 bash "$repo/bench/methods/d-seed.sh" >"$results/logs/d-as-written.log" 2>&1 || status=$?
	used=$(dumpe2fs -h "$out/image" 2>/dev/null | awk -F: '/^Inode count/ {n=$2} /^Free inodes/ {f=$2} END {print n-f}' || true)
	entries=$(sed -n 's/^entries=//p' "$main/corpus.env")
	# 11 inodes of a new filesystem, the registration, nix and nix/store.
	made=$((${used:-14} - 14))
	first=$(grep -v '^debugfs' "$out/errorlog" | grep -m1 -E 'not found|syntax|error|Invalid' || true)
	if [ "$status" = 0 ]; then
		verdict="its own check (grep for 'Could not allocate|File not found') passed"
	else
		verdict="its own check (grep for 'Could not allocate|File not found') failed the build"
	fi
	echo "(d) as written (names unquoted, split on blanks): stopped after $made of $entries names; $verdict; first debugfs complaint: ${first:-none}" >>"$results/notes.txt"
	log "(d) as written: $made of $entries names, exit $status"
	rm -rf "$out"
fi

if [ "$perf" = 1 ] && [[ $methods == *a* ]] && command -v perf >/dev/null; then
	out=$work/run/perf
	rm -rf "$out" && mkdir -p "$out"
	log "recording (a) with perf"
	CORPUS=$main OUT=$out perf record -g -o "$results/perf-a.data" bash "$repo/bench/methods/a-mkext4fs.sh" >"$results/logs/perf-a.log" 2>&1 || true
	# Self time by process, then by process and function; and the Go
	# functions of mkext4fs with their callees.
	perf report -i "$results/perf-a.data" --no-children --sort comm --stdio -g none 2>/dev/null |
		grep -v -e '^#' -e '^$' | head -20 >"$results/perf-a-comm.txt" || true
	perf report -i "$results/perf-a.data" --no-children --sort comm,dso,symbol --stdio -g none 2>/dev/null |
		grep -v -e '^#' -e '^$' | head -80 >"$results/perf-a.txt" || true
	perf report -i "$results/perf-a.data" --children --comm mkext4fs --sort symbol --stdio -g none 2>/dev/null |
		grep -v -e '^#' -e '^$' | grep -F mkext4fs/ | head -40 >"$results/perf-a-go.txt" || true
	rm -rf "$out"
fi

if [ "$series" = 1 ] && [ -n "$series_methods" ]; then
	for n in $series_inodes; do
		c=$work/corpus-inodes$n-seed$seed
		corpus "$c" -inodes "$n" -seed "$seed" -hashes=false
		cp "$c/corpus.env" "$results/corpus-inodes-$n.env"
		free_space_for "$c"
		tar -C "$c/root" -cf - . | cat >/dev/null
		for run in $(seq 1 "$series_runs"); do
			for m in $(echo "$series_methods" | grep -o .); do
				measure inodes "$n" "$m" "$run" "$c"
			done
		done
		[ "$keep" = 1 ] || rm -rf "$c"
	done
	for n in $series_flat; do
		c=$work/corpus-flat$n-seed$seed
		corpus "$c" -flat "$n" -seed "$seed" -hashes=false
		cp "$c/corpus.env" "$results/corpus-flat-$n.env"
		tar -C "$c/root" -cf - . | cat >/dev/null
		for run in $(seq 1 "$series_runs"); do
			for m in $(echo "$series_methods" | grep -o .); do
				# Only (a) repeats: (b) is quadratic here (minutes at 80k).
				[ "$m" != a ] && [ "$run" -gt 1 ] && continue
				measure flat "$n" "$m" "$run" "$c"
			done
		done
		[ "$keep" = 1 ] || rm -rf "$c"
	done
fi
rm -rf "$work/run"

"$bin/tabulate" "$results" | tee "$results/table.md"
log "results in $results (table.md, times.tsv, logs/)"
