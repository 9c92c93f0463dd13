// Package debugfsgen turns a planned tree into the command script that
// debugfs (e2fsprogs) runs with -f to populate an image. It only writes
// bytes; running debugfs is someone else's job.
//
// debugfs reads its script with fgets into an 8192-byte buffer, one command
// a line, cut at the first '\n' or '\r'; a line starting with '#' is a
// comment and one starting with '!' runs a shell. Each line is split the way
// lib/ss/parse.c splits it: blanks (space, tab) separate arguments, a '"'
// starts quoting anywhere in a token and, inside quotes, '""' is a literal
// '"'. Every argument is written so that this splitter gives back exactly
// the intended bytes (Quote), every line starts with a command name, names
// that commands would read as an inode number ("<12>") are passed as
// "./<12>", and a name or symlink target that cannot be carried (it holds a
// '\n', '\r' or NUL, or the line would be too long) is an error naming it.
//
// Directories with many entries are "staged", so that debugfs, whose name
// lookups and inserts into unindexed directories are linear, does not go
// quadratic. The first phase creates every directory, every entry of
// ordinary directories and a block and a half of a staged directory's
// entries. With Options.Merge (what a build uses) it makes the rest of them
// in chunk directories of one block under a staging directory, and the
// caller merges them into their directory (Script.Merges, MergeLines):
// one command an entry. Without it, a second phase, run after e2fsck -fD
// has indexed the staged directories, writes each remaining entry into a
// small staging directory, links it into the indexed directory with
// "ln STAGED ." (an htree insert, no scan) and unlinks the staged name: a
// script that makes the image by itself.
package debugfsgen
