// Package e2fs runs the e2fsprogs tools (mke2fs, debugfs, e2fsck, tune2fs)
// on an image file under libfaketime, with an environment of its own so that
// the host's configuration files, time zone, locale and clock cannot change
// the result, and reads back the superblock of the image.
//
// debugfs reports failures only as text and exits 0 even when commands fail,
// so RunDebugfs reads every line it prints: the echo of each command it was
// sent ("debugfs: LINE"), the "Allocated inode: N" of a write, and nothing
// else; any other line is an error, reported with the script line that
// caused it.
package e2fs
