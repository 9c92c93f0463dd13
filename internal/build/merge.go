package build

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"

	"github.com/mkext4fs/mkext4fs/internal/e2fs"
	"github.com/mkext4fs/mkext4fs/pkg/debugfsgen"
	"github.com/mkext4fs/mkext4fs/pkg/plan"
)

// Merging a staged directory: the first phase makes its deferred entries
// in chunk directories, small enough that debugfs' lookup before each
// write stays cheap, and lists their blocks. The build then reads the
// entries (name, inode, file type) out of the chunks' blocks, removes the
// chunks (not the inodes), gives the directory new blocks and writes the
// entries into them itself, one after the other as in any linear
// directory; the last e2fsck -D indexes it. One command per entry, where
// linking each entry into an indexed directory took three.

// merger collects what the first phase lists of merged directories.
type merger struct {
	s *debugfsgen.Script
	// want marks the phase's "ex -l" lines of merges; ext holds what they
	// listed.
	want map[int]bool
	ext  map[int][]e2fs.Extent
}

func newMerger(s *debugfsgen.Script) *merger {
	m := &merger{s: s, want: map[int]bool{}, ext: map[int][]e2fs.Extent{}}
	for _, d := range s.Merges {
		m.want[d.Extents] = true
		for _, c := range d.Chunks {
			m.want[c.Extents] = true
		}
	}
	return m
}

// hook makes ds, the first phase's script ending in its lines, hand the
// merges' extents to m too.
func (m *merger) hook(ds *e2fs.DebugfsScript, lines int) {
	onExtents(ds, lines, func(line int, ext []e2fs.Extent) {
		if m.want[line] {
			m.ext[line] = ext
		}
	})
}

// onExtents makes ds, a script that ends in lines of its own (after the
// commands the copier put first), also pass what each "ex -l" lists to
// fn, with the line counted within those.
func onExtents(ds *e2fs.DebugfsScript, lines int, fn func(line int, ext []e2fs.Extent)) {
	off := ds.Len() - lines
	inner := ds.Extents
	ds.Extents = func(i int, ext []e2fs.Extent) {
		if inner != nil {
			inner(i, ext)
		}
		fn(i-off, ext)
	}
}

// dirent is a directory entry.
type dirent struct {
	ino   uint32
	ftype uint8
	name  string
}

// mergeJob is one merged directory: its inode, the first block of its new
// blocks and their content.
type mergeJob struct {
	dir     *plan.Node
	ino     uint64
	from    uint64
	content []byte
}

// prepare reads the merged directories' entries out of the image, after
// the first phase, and lays out their new blocks. inodes receives the
// inode of every file of several names made in a chunk (those
// debugfsgen.MergeLines asks for).
func (m *merger) prepare(image *os.File, fsBlocks uint64, inodes map[*plan.Node]uint64) ([]*mergeJob, error) {
	var jobs []*mergeJob
	for _, d := range m.s.Merges {
		ext, ok := m.ext[d.Extents]
		if !ok {
			return nil, fmt.Errorf("%s: debugfs did not list its blocks", d.Dir.Path())
		}
		blocks, err := readBlocks(image, fsBlocks, ext)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.Dir.Path(), err)
		}
		own, err := parseDirBlock(blocks[:plan.BlockSize])
		if err != nil || len(own) < 2 || own[0].name != "." || own[1].name != ".." {
			return nil, fmt.Errorf("%s: its first block does not start with . and .. (%v)", d.Dir.Path(), err)
		}
		total := 0
		for _, c := range d.Chunks {
			total += len(c.Entries)
		}
		entries := make([]dirent, 0, total)
		for _, c := range d.Chunks {
			cext, ok := m.ext[c.Extents]
			if !ok {
				return nil, fmt.Errorf("%s: debugfs did not list the blocks of %s", d.Dir.Path(), c.Path)
			}
			found, err := chunkEntries(image, fsBlocks, cext)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", d.Dir.Path(), c.Path, err)
			}
			if len(found) != len(c.Entries) {
				return nil, fmt.Errorf("%s: %s holds %d entries, %d were made", d.Dir.Path(), c.Path, len(found), len(c.Entries))
			}
			for _, ce := range c.Entries {
				// Without the filetype feature, entries carry no type.
				e, ok := found[ce.Name]
				if !ok || e.ino == 0 || (e.ftype != 0 && e.ftype != fileType(ce.Kind)) {
					return nil, fmt.Errorf("%s: %s: entry %q missing or of the wrong type (%+v)", d.Dir.Path(), c.Path, ce.Name, e)
				}
				if ce.Node != nil {
					inodes[ce.Node] = uint64(e.ino)
				}
				// The tree's copy of the name: the chunk's goes with it.
				e.name = ce.Name
				entries = append(entries, e)
			}
		}
		jobs = append(jobs, &mergeJob{dir: d.Dir, ino: uint64(own[0].ino), from: uint64(len(blocks) / plan.BlockSize), content: layoutDir(entries)})
	}
	return jobs, nil
}

// fileType is the directory entry's file type of a kind of node.
func fileType(k plan.Kind) uint8 {
	switch k {
	case plan.File:
		return 1
	case plan.Dir:
		return 2
	case plan.Symlink:
		return 7
	}
	return 0
}

// readBlocks reads a directory's blocks, which must be initialised and
// cover its blocks from 0 on without holes.
func readBlocks(image *os.File, fsBlocks uint64, ext []e2fs.Extent) ([]byte, error) {
	var n uint64
	for _, e := range ext {
		if e.Uninit || e.Logical != n || e.Len == 0 || e.Physical == 0 || e.Physical+e.Len > fsBlocks || e.Len > 1<<20 {
			return nil, fmt.Errorf("unexpected directory extents %+v", ext)
		}
		n += e.Len
	}
	if n == 0 || n > 1<<20 {
		return nil, fmt.Errorf("unexpected directory extents %+v", ext)
	}
	b := make([]byte, n*plan.BlockSize)
	for _, e := range ext {
		if _, err := image.ReadAt(b[e.Logical*plan.BlockSize:(e.Logical+e.Len)*plan.BlockSize], int64(e.Physical)*plan.BlockSize); err != nil {
			return nil, fmt.Errorf("read the image: %w", err)
		}
	}
	return b, nil
}

// chunkEntries returns the entries of a chunk directory by name, "." and
// ".." left out.
func chunkEntries(image *os.File, fsBlocks uint64, ext []e2fs.Extent) (map[string]dirent, error) {
	b, err := readBlocks(image, fsBlocks, ext)
	if err != nil {
		return nil, err
	}
	found := map[string]dirent{}
	for off := 0; off < len(b); off += plan.BlockSize {
		entries, err := parseDirBlock(b[off : off+plan.BlockSize])
		if err != nil {
			return nil, fmt.Errorf("block %d: %w", off/plan.BlockSize, err)
		}
		for i, e := range entries {
			if off == 0 && i < 2 {
				if want := []string{".", ".."}[i]; e.name != want {
					return nil, fmt.Errorf("entry %d is %q, not %q", i, e.name, want)
				}
				continue
			}
			if _, dup := found[e.name]; dup {
				return nil, fmt.Errorf("two entries called %q", e.name)
			}
			found[e.name] = e
		}
	}
	return found, nil
}

// parseDirBlock returns the entries in use in a linear directory block
// (ext4 without checksum tails): inode, record length, name length, file
// type and the name, each record 4-byte aligned, the last reaching the
// block's end.
func parseDirBlock(b []byte) ([]dirent, error) {
	var out []dirent
	for off := 0; off < len(b); {
		if len(b)-off < 8 {
			return nil, fmt.Errorf("entry at %d crosses the block's end", off)
		}
		ino := binary.LittleEndian.Uint32(b[off:])
		rec := int(binary.LittleEndian.Uint16(b[off+4:]))
		nameLen := int(b[off+6])
		if rec < 8 || rec%4 != 0 || off+rec > len(b) || (ino != 0 && 8+nameLen > rec) {
			return nil, fmt.Errorf("entry at %d: record length %d, name length %d", off, rec, nameLen)
		}
		if ino != 0 {
			if nameLen == 0 {
				return nil, fmt.Errorf("entry at %d: empty name", off)
			}
			out = append(out, dirent{ino: ino, ftype: b[off+7], name: string(b[off+8 : off+8+nameLen])})
		}
		off += rec
	}
	return out, nil
}

// layoutDir writes entries into blocks, in order, as many to a block as
// fit; the last record of each block takes the rest of it.
func layoutDir(entries []dirent) []byte {
	blocks, used := 0, int64(plan.BlockSize)
	for _, e := range entries {
		rec := plan.RecLen(len(e.name))
		if used+rec > plan.BlockSize {
			blocks, used = blocks+1, 0
		}
		used += rec
	}
	out := make([]byte, 0, blocks*plan.BlockSize)
	block := make([]byte, 0, plan.BlockSize)
	last := -1 // offset of the block's last record
	flush := func() {
		if last < 0 {
			return
		}
		binary.LittleEndian.PutUint16(block[last+4:], uint16(plan.BlockSize-last))
		full := block[:plan.BlockSize]
		clear(full[len(block):])
		out = append(out, full...)
		block, last = block[:0], -1
	}
	for _, e := range entries {
		rec := int(plan.RecLen(len(e.name)))
		if len(block)+rec > plan.BlockSize {
			flush()
		}
		last = len(block)
		var head [8]byte
		binary.LittleEndian.PutUint32(head[0:], e.ino)
		binary.LittleEndian.PutUint16(head[4:], uint16(rec))
		head[6], head[7] = uint8(len(e.name)), e.ftype
		block = append(block, head[:]...)
		block = append(block, e.name...)
		block = append(block, make([]byte, rec-8-len(e.name))...)
	}
	flush()
	return out
}

// merge ends the merges, after the first phase: the chunks removed, then
// the directories' new blocks allocated and written. They are marked
// initialised by the next debugfs, with the other pending marks.
func merge(ctx context.Context, r *e2fs.Runner, copier *bulkCopier, m *merger, t *plan.Tree, image string) error {
	inodes := map[*plan.Node]uint64{}
	jobs, err := m.prepare(copier.image, copier.blocks, inodes)
	if err != nil {
		return err
	}
	from := make([]uint64, len(jobs))
	blocks := make([]uint64, len(jobs))
	for i, j := range jobs {
		from[i], blocks[i] = j.from, uint64(len(j.content)/plan.BlockSize)
	}
	remove, grow, exLines, err := debugfsgen.MergeLines(t, m.s, from, blocks, func(n *plan.Node) uint64 { return inodes[n] })
	if err != nil {
		return err
	}
	// The first run also marks the first phase's bulk files initialised.
	ds, allocated, err := copier.script(m.s, -1, nil, remove, nil)
	if err != nil {
		return err
	}
	if err := r.RunDebugfs(ctx, image, ds); err != nil {
		return err
	}
	if err := allocated(); err != nil {
		return err
	}
	ds, allocated, err = copier.script(m.s, -1, nil, grow, nil)
	if err != nil {
		return err
	}
	byLine := map[int]*mergeJob{}
	for i, l := range exLines {
		byLine[l] = jobs[i]
	}
	seen := 0
	var listErr error
	onExtents(ds, len(grow), func(line int, ext []e2fs.Extent) {
		if j := byLine[line]; j != nil {
			seen++
			if err := copier.addMerge(j, ext); err != nil && listErr == nil {
				listErr = err
			}
		}
	})
	if err := r.RunDebugfs(ctx, image, ds); err != nil {
		return err
	}
	if err := allocated(); err != nil {
		return err
	}
	if listErr != nil {
		return listErr
	}
	if seen != len(jobs) {
		return fmt.Errorf("debugfs listed the blocks of %d of %d merged directories", seen, len(jobs))
	}
	return copier.wait()
}
