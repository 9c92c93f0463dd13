# shellcheck shell=bash
# Sourced by the scripts in this directory: makes sure the system tools the
# project needs are installed. As root on Debian or Ubuntu it installs what is
# missing with apt-get; elsewhere it prints the command and fails.
#
# ensure_tools CMD:PACKAGE ...
ensure_tools() {
	local missing=() pkgs=() pair cmd pkg
	for pair in "$@"; do
		cmd=${pair%%:*}
		pkg=${pair#*:}
		if ! command -v "$cmd" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$cmd" ] && ! [ -x "/sbin/$cmd" ]; then
			missing+=("$cmd")
			case " ${pkgs[*]} " in *" $pkg "*) ;; *) pkgs+=("$pkg") ;; esac
		fi
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "installing ${pkgs[*]} (missing: ${missing[*]})" >&2
		apt-get update -qq >&2 || return 1
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2 || return 1
		return 0
	fi
	echo "missing tools: ${missing[*]}; install them with:" >&2
	echo "  sudo apt-get install ${pkgs[*]}" >&2
	return 1
}

# The tools the image build itself runs.
BUILD_TOOLS=(mkfs.ext4:e2fsprogs debugfs:e2fsprogs e2fsck:e2fsprogs faketime:faketime)
# What the tests add: real Nix, zstd, and the end-to-end boot test's tools.
TEST_TOOLS=(nix-store:nix-bin zstd:zstd sfdisk:fdisk mkfs.vfat:dosfstools mcopy:mtools
	qemu-system-x86_64:qemu-system-x86 busybox:busybox-static)
