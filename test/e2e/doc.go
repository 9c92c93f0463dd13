// Package e2e proves on a real system what the unit tests prove in parts:
// an image from mkext4fs build boots, grows on first boot and registers its
// store.
//
// TestBootSDImage assembles an SD-card-shaped disk as nixpkgs' sd-image.nix
// does (MBR; a FAT32 firmware partition at 8 MiB; the ext4 image as
// partition 2, labelled NIXOS_SD, with /boot/extlinux/extlinux.conf from
// --files), enlarges the disk file by 64 MiB, and boots Debian's kernel on
// it in qemu-system-x86_64 with KVM. The initramfs is built by the test as a
// "newc" cpio archive: static busybox, the kernel's own modules for virtio
// and ext4 (resolved through modules.dep), sfdisk, partx and resize2fs with
// their shared libraries (found with ldd), and an /init script.
//
// The guest mounts the root by label read-write, reports mode, owner and
// sha256 of chosen store entries, the registration's hash, runs two store
// programs through a bind mount at /nix, grows partition 2 to the end of the
// disk (echo ,+ | sfdisk -N2 --no-reread; partx -u) and the mounted
// filesystem with resize2fs, and powers off. Every result is a console line
// starting with E2E, compared by the host with what it derives from the
// source files. The host then checks the partition table, that the
// filesystem fills the partition, e2fsck -fn, and, on a read-only loop mount
// with an overlay for Nix's database, nix-store --load-db, --verify
// --check-contents and -q --requisites against the closure.
//
// It needs root, /dev/kvm, loop devices, qemu, a kernel in /boot with its
// modules, busybox-static, fdisk, dosfstools, mtools and Nix: without them
// it skips locally and fails when CI=true. scripts/e2e runs it alone.
package e2e
