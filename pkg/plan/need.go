package plan

import "strings"

// RecLen is the size of a directory entry for a name of n bytes.
func RecLen(n int) int64 { return int64(8+n+3) &^ 3 }

// entryBytes is what a directory's entries take, "." and ".." excluded.
func entryBytes(n *Node) int64 {
	var b int64
	for _, c := range n.Children() {
		b += RecLen(len(c.Name))
	}
	return b
}

// markStaged decides which directories are staged and how many of their
// non-directory entries seed them. A staged directory must span at least
// two blocks before the middle e2fsck -D so that it comes out indexed:
// seeds (and subdirectories, which are always made directly) fill a block
// and a half.
func (t *Tree) markStaged(limit int64) { markStagedUnder(t.Root, limit) }

// markStagedUnder is markStaged for the tree under dir.
func markStagedUnder(dir *Node, limit int64) {
	if limit == 0 {
		limit = DefaultStageBytes
	}
	if limit < 0 {
		return
	}
	walkFrom(dir, func(n *Node) bool {
		if n.Kind != Dir || entryBytes(n) <= limit {
			return true
		}
		n.Stage = true
		direct := int64(24) // "." and ".."
		for _, c := range n.Children() {
			if c.Kind == Dir {
				direct += RecLen(len(c.Name))
			}
		}
		// The first non-directories that fit are made directly.
		seed := 0
		for _, c := range n.Children() {
			if direct >= BlockSize*3/2 {
				break
			}
			if c.Kind != Dir {
				seed++
				direct += RecLen(len(c.Name))
			}
		}
		seeds := 0
		for _, c := range n.Children() {
			if c.Kind != Dir {
				c.Deferred = seeds >= seed
				seeds++
			}
		}
		return true
	})
}

// MergeChunkBytes bounds the entries of one chunk directory when a staged
// directory's entries are made in chunk directories and merged into it
// afterwards (see pkg/debugfsgen): a block, "." and ".." included, so that
// the lookup debugfs makes before each write reads one block. (Three
// blocks took 10-20% longer for 80,000 entries, eight blocks 70%; half a
// block was no faster.)
const MergeChunkBytes = BlockSize - 24

// Chunks splits the deferred entries of a staged directory into the chunk
// directories they are made in, in order.
func Chunks(n *Node) [][]*Node {
	var (
		out   [][]*Node
		cur   []*Node
		bytes int64
	)
	for _, c := range n.Children() {
		if !c.Deferred {
			continue
		}
		r := RecLen(len(c.Name))
		if len(cur) > 0 && bytes+r > MergeChunkBytes {
			out, cur, bytes = append(out, cur), nil, 0
		}
		cur, bytes = append(cur, c), bytes+r
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// Need is what the content of an image takes, in inodes and 4 KiB blocks.
type Need struct {
	// Inodes the content uses: every entry but the root and hard links.
	Inodes int64
	// DataBlocks of regular files; ExtentBlocks an upper bound on the
	// extent-tree blocks of files and directories; SymlinkBlocks for
	// targets of 60 bytes and more.
	DataBlocks, ExtentBlocks, SymlinkBlocks int64
	// DirBlocks is the directories' blocks once e2fsck -D laid them out,
	// the root's first block (made by mkfs) excluded.
	DirBlocks int64
	// PeakBlocks is how many more blocks the build may hold for a while:
	// staged directories grow through leaf splits before the last e2fsck
	// -D packs them, and the staging directory itself.
	PeakBlocks int64
	// PeakInodes is the staging directory's inode (and chunk
	// directories') while they exist.
	PeakInodes int64
}

// Blocks is the sum of the blocks the finished image holds.
func (n Need) Blocks() int64 {
	return n.DataBlocks + n.ExtentBlocks + n.SymlinkBlocks + n.DirBlocks
}

// Geometry is what of the filesystem's layout the need depends on.
type Geometry struct {
	// MetadataCsum: directory blocks end in a 12-byte checksum tail, and
	// htree nodes in an 8-byte one.
	MetadataCsum bool
	// WorstCasePeak sizes staged directories for leaves that are all
	// half full while they are built.
	WorstCasePeak bool
	// Merge: staged directories are made in chunk directories and merged
	// (see Chunks). A chunk is one block, fuller than e2fsck -D fills
	// leaves, so the chunks take fewer blocks than the directory will:
	// PeakBlocks needs nothing more, PeakInodes the chunks' inodes.
	Merge bool
}

// extent counts
const (
	// An extent holds at most 32768 blocks, or 32767 uninitialised ones
	// (what fallocate makes for Bulk files before they are marked
	// initialised).
	maxExtentLen    = 32767
	extentsInInode  = 4
	extentsPerBlock = (BlockSize - 12) / 12
)

// extentBlocks bounds the extent-tree blocks of a file of the given blocks
// in the given runs: every run is at least one extent, an extent holds at
// most 32768 blocks, and allocation may be cut once more per 32768 blocks
// by group metadata (and once by a hole in free space).
func extentBlocks(blocks, runs int64) int64 {
	if blocks == 0 {
		return 0
	}
	extents := runs + (blocks+maxExtentLen-1)/maxExtentLen + 1
	if extents <= extentsInInode {
		return 0
	}
	leaves := (extents + extentsPerBlock - 1) / extentsPerBlock
	if leaves <= extentsInInode {
		return leaves
	}
	return leaves + (leaves+extentsPerBlock-1)/extentsPerBlock
}

// dirLayout is the number of blocks e2fsck -D gives a directory whose
// entries (not counting "." and "..") take entries bytes.
func dirLayout(entries int64, csum bool) int64 {
	tail := int64(0)
	dxTail := int64(0)
	if csum {
		tail, dxTail = 12, 8
	}
	capacity := BlockSize - tail
	if entries+24 <= capacity {
		return 1
	}
	if csum && entries < BlockSize-24 {
		entries = padded(entries)
	}
	// More than a block: indexed.
	// Indexed: a root block, then leaves closed once less than 20% is
	// left, so every leaf but the last holds more than capacity-slack.
	slack := capacity * 20 / 100
	leaves := (entries-1)/(capacity-slack+1) + 1
	rootLimit := (BlockSize - 32 - dxTail) / 8
	blocks := 1 + leaves
	if leaves > rootLimit {
		nodeLimit := (BlockSize - 8 - dxTail) / 8
		blocks += (leaves + nodeLimit - 1) / nodeLimit
	}
	return blocks
}

// PadName is the name of the entry that pads a directory NeedsPad
// reports, or "" when n needs none.
func PadName(n *Node, csum bool) string {
	e := entryBytes(n)
	if n.Kind != Dir || !csum || e+24 <= BlockSize-12 || e >= BlockSize-24 {
		return ""
	}
	name := "mkext4fs-index-pad-" + strings.Repeat("p", padNameLen-19)
	for n.Child(name) != nil {
		name = name[:len(name)-1] + "q"
	}
	return name
}

// padNameLen is long enough that a padded directory spans two blocks and
// holds the 4072 bytes of entries e2fsck -D indexes from.
const padNameLen = 64

// A directory whose entries take 4061 to 4071 bytes fits one block while
// it is built but not once a 12-byte checksum tail is added, and e2fsck -D
// indexes only directories of two blocks and at least 4072 bytes of
// entries: it would leave it as two unindexed blocks. The build gives such
// a directory a padding entry (PadName) before the last e2fsck -D, which
// then indexes it, and removes the entry after.
func padded(entries int64) int64 { return entries + RecLen(padNameLen) }

// peakExtra estimates how many more blocks a staged directory holds after
// its entries were linked into its index one by one than once e2fsck -D
// packed it: a full leaf splits into two halves, so leaves end up about 70%
// full where e2fsck leaves them 80% full (measured: 100,000 names took 16%
// more leaves). The estimate allows 35% and a few blocks; the worst case
// (every leaf half full) is what a build falls back to if a directory ever
// outgrows the estimate.
func peakExtra(entries int64, worst bool) int64 {
	final := dirLayout(entries, false)
	if worst {
		leaves := entries/(BlockSize/2) + 2
		blocks := 1 + leaves
		if leaves > (BlockSize-32)/8 {
			blocks += (leaves+(BlockSize-8)/8-1)/((BlockSize-8)/8) + 1
		}
		if blocks <= final {
			return extentBlocks(blocks, blocks)
		}
		return blocks - final + extentBlocks(blocks, blocks)
	}
	return final*35/100 + 8
}

// Need adds up what the tree takes in a filesystem of the given geometry.
func (t *Tree) Need(g Geometry) Need {
	var need Need
	t.Walk(func(n *Node) bool {
		if sum := t.sumOf(n); sum != nil {
			need.add(sum.needs[g.index()])
			return false
		}
		addNeed(&need, n, g, n == t.Root)
		return true
	})
	if t.HasStaged() {
		need.PeakBlocks++ // the staging directory's block
		need.PeakInodes++
	}
	return need
}

// addNeed adds what node n takes by itself to need; root is set for the
// tree's root.
func addNeed(need *Need, n *Node, g Geometry, root bool) {
	if !root && n.Primary() == nil {
		need.Inodes++
	}
	switch n.Kind {
	case File:
		if n.Primary() == nil {
			need.DataBlocks += n.Blocks
			need.ExtentBlocks += extentBlocks(n.Blocks, n.Runs)
		}
	case Symlink:
		if len(n.Target()) >= 60 {
			need.SymlinkBlocks++
		}
	case Dir:
		e := entryBytes(n)
		blocks := dirLayout(e, g.MetadataCsum)
		need.ExtentBlocks += extentBlocks(blocks, blocks)
		if root {
			blocks-- // mkfs made the first
		}
		need.DirBlocks += blocks
		if n.Stage {
			need.PeakBlocks += peakExtra(e, g.WorstCasePeak)
			if g.Merge {
				need.PeakInodes += int64(len(Chunks(n)))
			}
		}
		if PadName(n, g.MetadataCsum) != "" {
			need.PeakInodes++ // the padding entry, a fast symlink
		}
	}
}

// HasStaged reports whether any directory is staged.
func (t *Tree) HasStaged() bool {
	staged := false
	t.Walk(func(n *Node) bool {
		if sum := t.sumOf(n); sum != nil {
			staged = staged || sum.staged
			return false
		}
		staged = staged || n.Stage
		return !staged
	})
	return staged
}
