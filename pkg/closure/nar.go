package closure

import (
	"bufio"
	"encoding/binary"
)

// narEncoder writes the NAR serialization (Nix's archive format, as
// nix-store --dump writes it) of a file tree whose walk calls its methods
// in order: every item of the format is a string, its length as a 64-bit
// little-endian number followed by its bytes and zeros up to a multiple of
// 8 bytes.
//
// go-nix's nar.Writer writes the same bytes, but hands every header to a
// goroutine of its own and back: for a store path of many small files that
// cost several times the hashing, most of all on a thread of lowered
// priority (internal/sched). Its tests hold this encoder to go-nix's
// writer and to Nix.
type narEncoder struct {
	w       *bufio.Writer
	scratch [8]byte
}

var narPadding [8]byte

// str writes one string of the format.
func (e *narEncoder) str(s string) error {
	if err := e.length(uint64(len(s))); err != nil {
		return err
	}
	if _, err := e.w.WriteString(s); err != nil {
		return err
	}
	return e.pad(uint64(len(s)))
}

func (e *narEncoder) length(n uint64) error {
	binary.LittleEndian.PutUint64(e.scratch[:], n)
	_, err := e.w.Write(e.scratch[:])
	return err
}

// pad ends a string of n bytes.
func (e *narEncoder) pad(n uint64) error {
	if r := n % 8; r != 0 {
		_, err := e.w.Write(narPadding[:8-r])
		return err
	}
	return nil
}

func (e *narEncoder) strs(ss ...string) error {
	for _, s := range ss {
		if err := e.str(s); err != nil {
			return err
		}
	}
	return nil
}

// begin starts the archive.
func (e *narEncoder) begin() error { return e.str("nix-archive-1") }

// symlink writes a symlink node.
func (e *narEncoder) symlink(target string) error {
	return e.strs("(", "type", "symlink", "target", target, ")")
}

// beginRegular writes a regular file's node up to its contents, which
// follow as size bytes written to e.w, then endRegular.
func (e *narEncoder) beginRegular(executable bool, size uint64) error {
	if err := e.strs("(", "type", "regular"); err != nil {
		return err
	}
	if executable {
		if err := e.strs("executable", ""); err != nil {
			return err
		}
	}
	if err := e.str("contents"); err != nil {
		return err
	}
	return e.length(size)
}

// endRegular ends a regular file's node of size bytes.
func (e *narEncoder) endRegular(size uint64) error {
	if err := e.pad(size); err != nil {
		return err
	}
	return e.str(")")
}

// beginDirectory starts a directory node; its entries follow, in bytewise
// order of their names, each as beginEntry, the node, endEntry; then
// endDirectory.
func (e *narEncoder) beginDirectory() error { return e.strs("(", "type", "directory") }

func (e *narEncoder) beginEntry(name string) error {
	return e.strs("entry", "(", "name", name, "node")
}

func (e *narEncoder) endEntry() error { return e.str(")") }

func (e *narEncoder) endDirectory() error { return e.str(")") }
