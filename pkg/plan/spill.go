package plan

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// summary is what a streamed tree keeps of a store path it released.
type summary struct {
	// needs is the store path's Need in each geometry (geometryIndex).
	needs     [8]Need
	stats     Stats
	staged    bool
	estimated int64
	// pads are the padding entries its directories need with
	// metadata_csum (see PadName).
	pads []Pad
	// bigWrite is its first file BigWrite reports, if any.
	bigWrite *Node
	// off and size locate its nodes in the spill.
	off, size int64
}

// geometryIndex numbers the eight geometries.
func (g Geometry) index() int {
	i := 0
	if g.MetadataCsum {
		i |= 1
	}
	if g.WorstCasePeak {
		i |= 2
	}
	if g.Merge {
		i |= 4
	}
	return i
}

func geometryOf(i int) Geometry {
	return Geometry{MetadataCsum: i&1 != 0, WorstCasePeak: i&2 != 0, Merge: i&4 != 0}
}

// sumOf returns the summary of n, a store path a streamed tree released,
// or nil.
func (t *Tree) sumOf(n *Node) *summary {
	if t.stream == nil || n.parent != t.Store {
		return nil
	}
	return t.stream.sums[n]
}

// Release is called with a store path of a streamed tree (see Stream)
// once the caller is done with its content: the tree sums it up, writes
// it to the spill and drops its nodes but Bulk files and staged
// directories with their entries (see ReleaseStaged). A store path with
// nothing to drop (one staged directory, or a file) stays as it is; on
// other trees Release does nothing.
func (t *Tree) Release(n *Node) error {
	s := t.stream
	if s == nil || n.parent != t.Store {
		return nil
	}
	if _, ok := s.sums[n]; ok || keptWhole(n) {
		return nil // released already, or nothing to drop
	}
	sum := summarize(n)
	buf := encodeNode(nil, n)
	if _, err := s.spill.WriteAt(buf, s.spilled); err != nil {
		return fmt.Errorf("write the walk's spill file: %w", err)
	}
	sum.off, sum.size = s.spilled, int64(len(buf))
	s.spilled += int64(len(buf))
	s.sums[n] = sum
	prune(n)
	return nil
}

// ReleaseStaged drops the entries of n, a staged directory in a store
// path Release let go of, once the script no longer needs them (the
// spill holds them). Elsewhere, and on other trees, it does nothing.
func (t *Tree) ReleaseStaged(n *Node) {
	if t.stream == nil || n.Kind != Dir || !n.Stage || n.more == nil {
		return
	}
	top := n
	for top.parent != nil && top.parent != t.Store {
		top = top.parent
	}
	if t.sumOf(top) != nil {
		n.more.children = nil
	}
}

// summarize sums up the tree under the store path n.
func summarize(n *Node) *summary {
	sum := &summary{}
	walkFrom(n, func(c *Node) bool {
		addNeeds(&sum.needs, c)
		addStats(&sum.stats, c)
		sum.staged = sum.staged || c.Stage
		if c.Estimated {
			sum.estimated++
		}
		if pad := PadName(c, true); pad != "" {
			sum.pads = append(sum.pads, Pad{Dir: c.Path(), Name: pad})
		}
		if sum.bigWrite == nil && isBigWrite(c) {
			sum.bigWrite = c
		}
		return true
	})
	return sum
}

// addNeeds adds what node c, in a store path, takes in each geometry.
func addNeeds(needs *[8]Need, c *Node) {
	for i := range needs {
		addNeed(&needs[i], c, geometryOf(i), false)
	}
}

// keptWhole reports whether prune would keep every node under n: every
// directory with entries is staged (a store path of one large directory).
func keptWhole(n *Node) bool {
	whole := true
	walkFrom(n, func(c *Node) bool {
		whole = whole && (c.Kind != Dir || c.Stage || len(c.Children()) == 0)
		return whole
	})
	return whole
}

// prune drops the children of every directory under n but the staged
// ones, whose entries the script still needs.
func prune(n *Node) {
	for _, c := range n.Children() {
		if c.Kind == Dir {
			prune(c)
		}
	}
	if n.Kind == Dir && !n.Stage && n.more != nil {
		n.more.children = nil
	}
}

// load reads back the nodes of the released store path n, in a tree of
// their own under the store directory. They lack the runs of Data.
func (t *Tree) load(n *Node, sum *summary) (*Node, error) {
	buf := make([]byte, sum.size)
	if _, err := t.stream.spill.ReadAt(buf, sum.off); err != nil {
		return nil, fmt.Errorf("read the walk's spill file: %w", err)
	}
	d := &decoder{buf: buf}
	c := d.node(t.Store)
	if d.err == nil && len(d.buf) != 0 {
		d.err = errors.New("trailing bytes")
	}
	if d.err != nil {
		return nil, fmt.Errorf("internal error: store path %s read back from the spill file: %v", n.Name, d.err)
	}
	c.set(top, true)
	return c, nil
}

// The flags of an encoded node, beside its kind in the low two bits.
const (
	encStage = 1 << (iota + 2)
	encDeferred
	encBulk
	encEstimated
	encInDir
	encExtra
)

// encodeNode appends n and the tree under it to buf, in the order of
// Tree.Walk.
func encodeNode(buf []byte, n *Node) []byte {
	f := byte(n.Kind)
	for _, b := range []struct {
		on  bool
		bit byte
	}{{n.Stage, encStage}, {n.Deferred, encDeferred}, {n.Bulk, encBulk}, {n.Estimated, encEstimated},
		{n.is(inDir), encInDir}, {n.is(extra), encExtra}} {
		if b.on {
			f |= b.bit
		}
	}
	buf = append(buf, f)
	buf = appendString(buf, n.Name)
	for _, v := range []uint64{uint64(n.Perm), uint64(n.UID), uint64(n.GID), uint64(n.Links),
		n.id.dev, n.id.ino, uint64(n.id.mode), uint64(n.id.nlink)} {
		buf = binary.AppendUvarint(buf, v)
	}
	for _, v := range []int64{n.Size, n.Blocks, n.Runs, n.id.mtime, n.id.ctime} {
		buf = binary.AppendVarint(buf, v)
	}
	if !n.is(inDir) {
		buf = appendString(buf, n.host())
	}
	switch n.Kind {
	case Symlink:
		buf = appendString(buf, n.Target())
	case Dir:
		buf = binary.AppendUvarint(buf, uint64(len(n.Children())))
		for _, c := range n.Children() {
			buf = encodeNode(buf, c)
		}
	}
	return buf
}

func appendString(buf []byte, s string) []byte {
	return append(binary.AppendUvarint(buf, uint64(len(s))), s...)
}

// decoder reads what encodeNode wrote; the first error sticks.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) uvarint() uint64 { return number(d, binary.Uvarint) }

func (d *decoder) varint() int64 { return number(d, binary.Varint) }

// number reads one number with read.
func number[T uint64 | int64](d *decoder, read func([]byte) (T, int)) T {
	if d.err != nil {
		return 0
	}
	v, k := read(d.buf)
	if k <= 0 {
		d.err = errors.New("bad number")
		return 0
	}
	d.buf = d.buf[k:]
	return v
}

func (d *decoder) string() string {
	k := d.uvarint()
	if d.err != nil || k > uint64(len(d.buf)) {
		if d.err == nil {
			d.err = errors.New("short string")
		}
		return ""
	}
	s := string(d.buf[:k])
	d.buf = d.buf[k:]
	return s
}

// node decodes a node and the tree under it, as a child of parent.
func (d *decoder) node(parent *Node) *Node {
	if d.err != nil || len(d.buf) == 0 {
		if d.err == nil {
			d.err = errors.New("short node")
		}
		return nil
	}
	f := d.buf[0]
	d.buf = d.buf[1:]
	n := &Node{Kind: Kind(f & 3), parent: parent, Stage: f&encStage != 0, Deferred: f&encDeferred != 0,
		Bulk: f&encBulk != 0, Estimated: f&encEstimated != 0}
	n.set(inDir, f&encInDir != 0)
	n.set(extra, f&encExtra != 0)
	n.Name = d.string()
	n.Perm, n.UID, n.GID, n.Links = uint32(d.uvarint()), uint32(d.uvarint()), uint32(d.uvarint()), int32(d.uvarint())
	n.id.dev, n.id.ino, n.id.mode, n.id.nlink = d.uvarint(), d.uvarint(), uint32(d.uvarint()), uint32(d.uvarint())
	n.Size, n.Blocks, n.Runs, n.id.mtime, n.id.ctime = d.varint(), d.varint(), d.varint(), d.varint(), d.varint()
	if f&encInDir == 0 {
		if h := d.string(); h != "" {
			n.m().host = h
		}
	}
	switch n.Kind {
	case Symlink:
		target := d.string()
		n.target = &target
	case Dir:
		k := d.uvarint()
		if k > uint64(len(d.buf)) {
			d.err = errors.New("bad count of entries")
			return n
		}
		children := make([]*Node, 0, k)
		for i := uint64(0); i < k && d.err == nil; i++ {
			children = append(children, d.node(n))
		}
		n.m().children = children
	case File:
	default:
		d.err = fmt.Errorf("bad kind %d", n.Kind)
	}
	return n
}

// Pad is a padding entry a directory needs (see PadName).
type Pad struct {
	// Dir is the directory's path in the image; Name the entry's.
	Dir, Name string
}

// Pads lists the padding entries the tree's directories need, in the
// order of Walk.
func (t *Tree) Pads(csum bool) []Pad {
	var pads []Pad
	t.Walk(func(n *Node) bool {
		if sum := t.sumOf(n); sum != nil {
			if csum {
				pads = append(pads, sum.pads...)
			}
			return false
		}
		if pad := PadName(n, csum); pad != "" {
			pads = append(pads, Pad{Dir: n.Path(), Name: pad})
		}
		return true
	})
	return pads
}

// BigWriteSize is the size above which e2fsprogs 1.47.3's write cannot
// copy a file.
const BigWriteSize = 2 << 30

func isBigWrite(n *Node) bool { return n.Kind == File && !n.Bulk && n.Size > BigWriteSize }

// BigWrite returns the first file larger than BigWriteSize that the
// script copies with write (not in bulk), or nil.
func (t *Tree) BigWrite() *Node {
	var big *Node
	t.Walk(func(n *Node) bool {
		if big != nil {
			return false
		}
		if sum := t.sumOf(n); sum != nil {
			big = sum.bigWrite
			return false
		}
		if isBigWrite(n) {
			big = n
		}
		return big == nil
	})
	return big
}

// PathNeed is what the store path n (a child of the store directory)
// takes, in the given geometry.
func (t *Tree) PathNeed(n *Node, g Geometry) Need {
	if sum := t.sumOf(n); sum != nil {
		return sum.needs[g.index()]
	}
	var need Need
	walkFrom(n, func(c *Node) bool {
		addNeed(&need, c, g, false)
		return true
	})
	return need
}

func (n *Need) add(o Need) {
	n.Inodes += o.Inodes
	n.DataBlocks += o.DataBlocks
	n.ExtentBlocks += o.ExtentBlocks
	n.SymlinkBlocks += o.SymlinkBlocks
	n.DirBlocks += o.DirBlocks
	n.PeakBlocks += o.PeakBlocks
	n.PeakInodes += o.PeakInodes
}

func (s *Stats) add(o Stats) {
	s.Dirs += o.Dirs
	s.Files += o.Files
	s.Symlinks += o.Symlinks
	s.HardLinks += o.HardLinks
	s.Bytes += o.Bytes
}
