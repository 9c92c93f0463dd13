// Package imagecheck reads an ext4 image back through e2fsprogs, without
// mounting it, and checks it against the closure it was built from: what
// mkext4fs verify and the build tests run.
//
// # Reading the tree
//
// Read walks the image with read-only debugfs processes, one per tree level:
// "ls -p <INO>" for every directory and "stat <INO>" for every inode, always
// by inode number, so debugfs never has to parse a name. "ls -p" prints one
// entry as
//
//	/INO/MODE/UID/GID/NAME/SIZE/      (MODE in octal; SIZE empty for directories)
//
// with NAME raw (e2fsprogs 1.47.0, debugfs/ls.c): any byte but '/' and NUL,
// newlines included. The listing is therefore read as a stream of
// '/'-separated fields, not as lines. From "stat" only the fixed head is read
// (type, mode, flags, owner, size, link count, ctime/atime/mtime/crtime with
// their extra fields); the lines after it can carry a symlink target or
// extended attribute values.
//
// debugfs -f echoes every command as "debugfs: CMD" and gives no other
// delimiter between outputs, and a name can contain "\ndebugfs: ". So each
// command is preceded by a comment line with a random nonce, which debugfs
// echoes verbatim; the output is cut at those lines only. Standard output and
// error share one pipe (debugfs leaves both unbuffered with -f), so an error
// message stays next to its command.
//
// # Reading the contents
//
// StreamContents runs one more debugfs with "cat <INO>" for every regular
// file (and every symlink whose target is too long for the inode) in the
// order the checks need them, and reads the bytes straight from the pipe:
// nothing is copied to disk. debugfs writes a file raw between two command
// echoes, without a delimiter; the stream knows each file's size from
// "stat", reads exactly that much, and then the next nonce marker must
// follow, or the stream fails with what debugfs printed there. Each store
// path is serialized from the tree and these bytes with go-nix's NAR writer
// and hashed; a store path whose hash differs is then compared file by file
// with the source, when there is one, to name what differs.
//
// # What Verify checks
//
//   - e2fsck -fn finds nothing;
//   - the store directory holds exactly the closure's paths, each with the
//     closure's NAR hash and size;
//   - the registration file equals, byte for byte, what the closure writes;
//   - the layout: / 0755, lost+found 0700 and empty, the store directory's
//     parents 0755, the store directory 1775 owned by 0:30000, the
//     registration 0444, all owned by root; everything inside the store paths
//     owned by the given owner, with the source's modes (or Nix's canonical
//     0444/0555 files, 0555 directories, 0777 symlinks without a source);
//     the --files content (when given) exactly, directories 0755;
//   - every inode's atime, ctime, mtime and crtime equal to the timestamp,
//     with zero nanoseconds;
//   - link counts equal to the number of names of each inode;
//   - every directory larger than one block carries an htree index
//     (EXT2_INDEX_FL).
package imagecheck
