package plan

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// SmallSize reports the size up to which the walk left the regular files
// of the store paths unread (Options.DeferSmall), and whether it did.
// The caller reads every one of them (a file once for each of its names)
// and gives what it read to a SmallReads.
func (t *Tree) SmallSize() (int64, bool) {
	return t.small, t.deferred
}

// smallKey identifies a file's content as the walk saw it: what
// CheckUnchanged compares, but for the link count and ctime, which a hard
// link made elsewhere changes.
type smallKey struct {
	dev, ino    uint64
	size, mtime int64
	mode        uint32
}

func smallKeyOf(id fileID, size int64) smallKey {
	return smallKey{dev: id.dev, ino: id.ino, size: size, mtime: id.mtime, mode: id.mode}
}

// SmallReads collects what the caller read of the files the walk left
// unread. Its methods may be called from several goroutines at once.
type SmallReads struct {
	mu   sync.Mutex
	seen int64
	// sparse holds the counts of the files with a block of zeros; the
	// others store every block, in one run.
	sparse map[smallKey][2]int64
}

// Add records one name of a file whose lstat is st and whose whole
// content is content.
func (r *SmallReads) Add(st *unix.Stat_t, content []byte) {
	blocks, runs := DataBlocks(content)
	full := (int64(len(content)) + BlockSize - 1) / BlockSize
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen++
	if blocks == full && runs == min(full, 1) {
		return
	}
	if r.sparse == nil {
		r.sparse = map[smallKey][2]int64{}
	}
	r.sparse[smallKeyOf(idOf(st), st.Size)] = [2]int64{blocks, runs}
}

// Settle makes the Blocks and Runs of the files the walk left unread
// exact, from what r collected. It fails when r did not see each of them
// once.
func (t *Tree) Settle(r *SmallReads) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var estimated int64
	t.Walk(func(n *Node) bool {
		if sum := t.sumOf(n); sum != nil {
			estimated += sum.estimated
			return false
		}
		if n.Estimated {
			estimated++
		}
		return true
	})
	if estimated != r.seen {
		return fmt.Errorf("internal error: %d small files were left to be read during the build, and %d were read (please report this)", estimated, r.seen)
	}
	settle := func(n *Node) bool {
		if n.Estimated {
			n.Runs = min(n.Blocks, 1)
			if c, ok := r.sparse[smallKeyOf(n.id, n.Size)]; ok {
				n.Blocks, n.Runs = c[0], c[1]
			}
			n.Estimated = false
		}
		return true
	}
	return t.eachLoaded(func(n *Node, sum *summary) bool { return sum.estimated > 0 }, func(n *Node, sum *summary) {
		if sum == nil {
			settle(n)
			return
		}
		// A released store path is settled in a copy read back, and
		// its needs summed up again.
		var needs [8]Need
		walkFrom(n, func(c *Node) bool {
			settle(c)
			addNeeds(&needs, c)
			return true
		})
		sum.needs, sum.estimated = needs, 0
	})
}

// eachLoaded calls fn with every node of the tree in the order of Walk,
// sum nil; a store path the tree released is read back from the spill
// (when want says so; it is skipped otherwise) and fn is called with its
// copy and its summary instead, once.
func (t *Tree) eachLoaded(want func(n *Node, sum *summary) bool, fn func(n *Node, sum *summary)) error {
	var err error
	t.Walk(func(n *Node) bool {
		if err != nil {
			return false
		}
		sum := t.sumOf(n)
		if sum == nil {
			fn(n, nil)
			return true
		}
		if want(n, sum) {
			var c *Node
			if c, err = t.load(n, sum); err == nil {
				fn(c, sum)
			}
		}
		return false
	})
	return err
}

// CheckReadable opens the files the walk left unread (Options.DeferSmall)
// and returns the error the walk would have given for the first one that
// cannot be opened, if any: a build that failed on such a file can say
// which it was and why.
func (t *Tree) CheckReadable() error {
	var err error
	check := func(n *Node) bool {
		if err != nil {
			return false
		}
		if n.Estimated {
			var fd int
			if fd, err = n.OpenFile(); err == nil {
				unix.Close(fd)
			}
		}
		return true
	}
	lerr := t.eachLoaded(func(n *Node, sum *summary) bool { return err == nil && sum.estimated > 0 }, func(n *Node, sum *summary) {
		if sum == nil {
			check(n)
		} else {
			walkFrom(n, check)
		}
	})
	if err != nil {
		return err
	}
	return lerr
}
