// Package plan walks the content of an image and works out what the ext4
// filesystem needs to hold it.
//
// Walk builds a Tree: every store path of the closure under /nix/store, the
// registration file and the extra files, read with lstat only (a symlink is
// never followed), children sorted bytewise, each regular file scanned for the
// 4 KiB blocks that debugfs will store (it skips holes and all-zero blocks).
//
// Need turns a Tree into counts: inodes, data blocks, extent-tree blocks,
// symlink blocks and directory blocks, the last modelled on how e2fsck -D
// lays out directories (entries of 8 + name length rounded to 4 bytes; leaves
// of indexed directories left with 20% slack; a 12-byte checksum tail per
// block with metadata_csum), so that the image can be sized from what its
// content needs rather than from fudge factors.
package plan
