// Command corpus writes a synthetic Nix store closure for the benchmark:
// a tree shaped like a NixOS system closure, deterministic from a seed, and
// the graph files that Nix's exportReferencesGraph would hand a derivation.
//
// Usage:
//
//	go run ./bench/corpus -out DIR [-seed N] [-scale F | -inodes N | -flat N] [-hashes=false] [-force]
//
// What it writes under DIR:
//
//	root/nix/store/<hash>-<name>/...   the store paths (root/nix 0755, root/nix/store 01775 gid 30000)
//	closure                            text form: per path the path, an empty deriver line,
//	                                   the number of references, the references
//	.attrs.json                        structured form: {"closure": [{"path", "narHash",
//	                                   "narSize", "references", "closureSize"}, ...], ...}
//	registration                       nix-store --load-db input (only with hashes)
//	store-paths                        every path of the closure, one a line, sorted
//	files/boot/extlinux/extlinux.conf  a small file for the image root (--files)
//	corpus.env                         counts as shell assignments (paths, entries, inodes, bytes, ...)
//
// Shape at scale 1 (about 1,200 store paths, 110k names, 1.5 GB): many small
// files (log-normal sizes), executables and shared libraries with aligned
// all-zero 4 KiB blocks as ELF padding leaves them, a long tail of large
// files up to about 320 MB, three directories of 10k-14k entries
// (share/man/man3, lib/firmware, a flat kernel-module directory), library
// symlink chains (short targets) and symlinks into other store paths (long
// targets, over 60 bytes), licence texts and other identical files
// hardlinked across store paths as `nix-store --optimise` leaves them, a
// 30-level nested tree, and a few names with spaces, quotes and UTF-8.
// Every entry has store modes (files 0444 or 0555, directories 0555) and
// mtime 1. The references form a DAG over the paths (a path may also refer
// to itself, as real store paths do); the last path, the "system", refers to
// every path nothing else refers to, so the closure of it is the whole set.
//
// -scale multiplies the number of paths, of names and of bytes (0.01 to 4);
// -inodes N picks the scale that gives about N names; -flat N writes a
// closure of one store path holding one directory of N entries.
//
// narHash and narSize in .attrs.json are computed here (NAR serialisation of
// go-nix, sha256, nix-base32) unless -hashes=false; the text form never
// carries hashes, so a tool reading it must hash the paths itself.
//
// The same seed and scale give the same names, contents, links and graph
// files on every machine (planning is sequential; only the writing is
// parallel).
package main
