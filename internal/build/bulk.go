package build

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/mkext4fs/mkext4fs/internal/e2fs"
	"github.com/mkext4fs/mkext4fs/internal/sched"
	"github.com/mkext4fs/mkext4fs/pkg/debugfsgen"
	"github.com/mkext4fs/mkext4fs/pkg/plan"
)

// DefaultBulkBlocks is the size, in blocks, from which a file's content is
// copied into the image by the tool rather than by debugfs' write, which
// stores a file one 4 KiB block and one system call at a time: debugfs
// creates the file empty and allocates its blocks (fallocate), the tool
// copies the content into them, and a later debugfs marks them
// initialised. The four commands this takes cost about as much as
// writing seven blocks with write.
const DefaultBulkBlocks = 8

// emptyFiles makes the empty host files bulk files are created from, one
// per permission set, in dir.
type emptyFiles struct {
	dir   string
	mu    sync.Mutex
	paths map[uint32]string
}

func (e *emptyFiles) get(perm uint32) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p, ok := e.paths[perm]; ok {
		return p, nil
	}
	if e.paths == nil {
		if err := os.MkdirAll(e.dir, 0o755); err != nil {
			return "", err
		}
		e.paths = map[uint32]string{}
	}
	p := filepath.Join(e.dir, fmt.Sprintf("%04o", perm))
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	f.Close()
	// Chmod, unlike the umask-filtered create, sets the bits as given;
	// debugfs' write copies them to the new inode.
	if err := os.Chmod(p, os.FileMode(perm)); err != nil {
		return "", err
	}
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return "", err
	}
	if uint32(st.Mode)&0o7777 != perm || st.Size != 0 {
		return "", fmt.Errorf("%s: made with mode %04o, got %04o", p, perm, st.Mode&0o7777)
	}
	e.paths[perm] = p
	return p, nil
}

// bulkCopier copies bulk files into the blocks debugfs allocated for them,
// while debugfs goes on with the script.
type bulkCopier struct {
	ctx    context.Context
	image  *os.File
	blocks uint64 // the filesystem's size, in blocks

	jobs    chan *bulkJob
	workers sync.WaitGroup
	queued  sync.WaitGroup // jobs not done yet

	closeOnce sync.Once
	closeErr  error

	mu      sync.Mutex
	err     error
	pending []*bulkJob // copied or being copied, not yet marked initialised
	copied  int64      // bytes
}

// bulkJob is one bulk file, where debugfs allocated it and where its
// extents go (placed); or, with merge set, the new blocks of a merged
// directory.
type bulkJob struct {
	node    *plan.Node
	ino     uint64
	extents []e2fs.Extent
	placed  []debugfsgen.Extent
	merge   *mergeJob
}

func newBulkCopier(ctx context.Context, image string, blocks uint64) (*bulkCopier, error) {
	f, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	c := &bulkCopier{ctx: ctx, image: f, blocks: blocks, jobs: make(chan *bulkJob, 1024)}
	for i := 0; i < runtime.GOMAXPROCS(0); i++ {
		c.workers.Add(1)
		go c.worker()
	}
	return c, nil
}

func (c *bulkCopier) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

func (c *bulkCopier) failed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err != nil
}

func (c *bulkCopier) worker() {
	defer c.workers.Done()
	// debugfs, on the critical path, goes first.
	sched.Background()
	buf := make([]byte, 1<<20)
	for j := range c.jobs {
		if !c.failed() && c.ctx.Err() == nil {
			write := c.copyFile
			if j.merge != nil {
				write = c.copyMerge
			}
			n, err := write(j, buf)
			if err != nil {
				c.fail(err)
			}
			c.mu.Lock()
			c.copied += n
			c.mu.Unlock()
		}
		c.queued.Done()
	}
}

// script returns phase's lines as a debugfs script that hands the bulk
// files' inodes and extents over to the copier. The commands left from
// the phase before run first, then first, then lines.
func (c *bulkCopier) script(s *debugfsgen.Script, phase int, first, lines []string, progress func(int)) (*e2fs.DebugfsScript, func() error, error) {
	pre, err := c.takePending()
	if err != nil {
		return nil, nil, err
	}
	pre = append(pre, first...)
	writes := map[int]*debugfsgen.BulkFile{}
	exes := map[int]*debugfsgen.BulkFile{}
	for i := range s.Bulk {
		b := &s.Bulk[i]
		if b.Phase == phase {
			writes[len(pre)+b.Write] = b
			exes[len(pre)+b.Extents] = b
		}
	}
	inodes := map[*plan.Node]uint64{}
	seen := 0
	var scriptErr error
	ds := &e2fs.DebugfsScript{
		Pre:      pre,
		Lines:    lines,
		Progress: progress,
		Inode: func(i int, ino uint64) {
			if b := writes[i]; b != nil {
				inodes[b.Node] = ino
			}
		},
		Extents: func(i int, ext []e2fs.Extent) {
			b := exes[i]
			if b == nil {
				return
			}
			seen++
			ino := inodes[b.Node]
			if err := c.checkExtents(b.Node, ino, ext); err != nil {
				if scriptErr == nil {
					scriptErr = err
				}
				return
			}
			c.add(b.Node, ino, ext)
		},
	}
	// done reports whether every bulk file of the phase was allocated as
	// planned; the copies may still be running.
	done := func() error {
		if scriptErr != nil {
			return scriptErr
		}
		if seen != len(exes) {
			return fmt.Errorf("debugfs listed the extents of %d of %d bulk files", seen, len(exes))
		}
		return nil
	}
	return ds, done, nil
}

// checkExtents makes sure debugfs allocated exactly what the script
// asked for, in uninitialised extents inside the filesystem: the file's
// run of data, or its runs one after the other from block 0.
func (c *bulkCopier) checkExtents(n *plan.Node, ino uint64, ext []e2fs.Extent) error {
	if ino == 0 {
		return fmt.Errorf("%s: debugfs reported no inode for it", n.Path())
	}
	want := n.Data()
	if len(want) > 1 {
		want = [][2]int64{{0, n.Blocks}}
	}
	// The extents, merged where they follow each other.
	var runs [][2]int64
	for _, e := range ext {
		if !e.Uninit || e.Len == 0 || e.Physical == 0 || e.Physical+e.Len > c.blocks || e.Physical+e.Len < e.Physical ||
			e.Logical > 1<<40 || e.Len > 1<<40 {
			return fmt.Errorf("%s: unexpected extents after fallocate: %+v", n.Path(), ext)
		}
		l, k := int64(e.Logical), int64(e.Len)
		if last := len(runs) - 1; last >= 0 && runs[last][0]+runs[last][1] == l {
			runs[last][1] += k
		} else {
			if last >= 0 && runs[last][0]+runs[last][1] > l {
				return fmt.Errorf("%s: extents out of order after fallocate: %+v", n.Path(), ext)
			}
			runs = append(runs, [2]int64{l, k})
		}
	}
	if !slices.Equal(runs, want) {
		return fmt.Errorf("%s: fallocate allocated blocks %v, want %v", n.Path(), runs, want)
	}
	return nil
}

// asDebugfsgen gives extents as debugfs listed them to pkg/debugfsgen,
// with their place in the inode's array where the tree is that array.
func asDebugfsgen(ext []e2fs.Extent) []debugfsgen.Extent {
	out := make([]debugfsgen.Extent, len(ext))
	for i, e := range ext {
		out[i] = debugfsgen.Extent{Logical: e.Logical, Physical: e.Physical, Len: e.Len, Uninit: e.Uninit, Slot: -1}
		if e.Depth == 0 {
			out[i].Slot = e.Entry
		}
	}
	return out
}

// place returns the extents a bulk file ends with: those fallocate made,
// or, for a file of several runs (allocated one after the other from
// block 0), their blocks cut at the runs' ends and moved to the runs'
// places in the file.
func place(n *plan.Node, ext []e2fs.Extent) []debugfsgen.Extent {
	data := n.Data()
	if len(data) == 1 {
		return asDebugfsgen(ext)
	}
	var out []debugfsgen.Extent
	r, inRun := 0, uint64(0) // the run, and how far into it
	for _, e := range ext {
		for done := uint64(0); done < e.Len; {
			left := uint64(data[r][1]) - inRun
			k := min(left, e.Len-done)
			out = append(out, debugfsgen.Extent{Logical: uint64(data[r][0]) + inRun, Physical: e.Physical + done, Len: k, Slot: -1})
			done += k
			inRun += k
			if inRun == uint64(data[r][1]) {
				r, inRun = r+1, 0
			}
		}
	}
	return out
}

// add queues a file's copy; add is called in script order.
func (c *bulkCopier) add(n *plan.Node, ino uint64, ext []e2fs.Extent) {
	c.queue(&bulkJob{node: n, ino: ino, extents: ext, placed: place(n, ext)})
}

// addMerge queues the writing of a merged directory's new blocks, which
// debugfs allocated as ext lists them.
func (c *bulkCopier) addMerge(m *mergeJob, ext []e2fs.Extent) error {
	want := uint64(len(m.content) / plan.BlockSize)
	next := m.from
	for _, e := range ext {
		if e.Logical < m.from {
			if e.Uninit || e.Logical+e.Len > m.from {
				return fmt.Errorf("%s: unexpected extents after fallocate: %+v", m.dir.Path(), ext)
			}
			continue
		}
		if !e.Uninit || e.Logical != next || e.Len == 0 || e.Physical == 0 || e.Physical+e.Len > c.blocks || e.Physical+e.Len < e.Physical {
			return fmt.Errorf("%s: unexpected extents after fallocate: %+v", m.dir.Path(), ext)
		}
		next += e.Len
	}
	if next != m.from+want {
		return fmt.Errorf("%s: fallocate allocated blocks %d to %d, want %d to %d", m.dir.Path(), m.from, next, m.from, m.from+want)
	}
	c.queue(&bulkJob{node: m.dir, ino: m.ino, extents: ext, placed: asDebugfsgen(ext), merge: m})
	return nil
}

func (c *bulkCopier) queue(j *bulkJob) {
	c.mu.Lock()
	c.pending = append(c.pending, j)
	c.mu.Unlock()
	c.queued.Add(1)
	c.jobs <- j
}

// wait waits for the copies queued so far; pending marks stay.
func (c *bulkCopier) wait() error {
	c.queued.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return c.ctx.Err()
}

// takePending returns the commands that finish the files copied so far
// (after wait), in script order: their extents marked initialised, or,
// for files of several runs, rewritten in place.
func (c *bulkCopier) takePending() ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var lines []string
	for _, j := range c.pending {
		var (
			cmds []string
			err  error
		)
		if j.merge != nil || len(j.node.Data()) == 1 {
			cmds, err = debugfsgen.MarkInitialized(j.ino, j.placed)
		} else {
			cmds, err = debugfsgen.Place(j.ino, asDebugfsgen(j.extents), j.placed)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", j.node.Path(), err)
		}
		lines = append(lines, cmds...)
	}
	c.pending = nil
	return lines, nil
}

// close ends the workers, skipping the copies not started, and closes
// the image.
func (c *bulkCopier) close() error {
	c.closeOnce.Do(func() {
		c.fail(errors.New("stopped"))
		close(c.jobs)
		c.workers.Wait()
		c.closeErr = c.image.Close()
	})
	return c.closeErr
}

// copyFile copies a file's content into its extents and zeros the rest of
// its last block. It returns the bytes copied.
func (c *bulkCopier) copyFile(j *bulkJob, buf []byte) (int64, error) {
	n := j.node
	fd, err := n.OpenFile()
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	size := n.Size
	var done int64
	for _, e := range j.placed {
		from := int64(e.Logical) * plan.BlockSize
		to := from + int64(e.Len)*plan.BlockSize
		dst := int64(e.Physical) * plan.BlockSize
		for off := from; off < to; {
			if err := c.ctx.Err(); err != nil {
				return done, err
			}
			want := int64(len(buf))
			if to-off < want {
				want = to - off
			}
			chunk := buf[:want]
			got := 0
			if off < size {
				end := want
				if size-off < end {
					end = size - off
				}
				got, err = preadFull(fd, chunk[:end], off)
				if err != nil {
					return done, fmt.Errorf("%s: read %s: %w", n.Describe(), n.Host(), err)
				}
				if int64(got) < end {
					return done, fmt.Errorf("%s: %s shrank during the build", n.Describe(), n.Host())
				}
			}
			clear(chunk[got:])
			if _, err := c.image.WriteAt(chunk, dst+(off-from)); err != nil {
				return done, fmt.Errorf("write %s into the image: %w", n.Path(), err)
			}
			done += int64(got)
			off += want
		}
	}
	// The file must end where it ended when walked.
	var one [1]byte
	if m, err := unix.Pread(fd, one[:], size); m != 0 || err != nil {
		if err == nil {
			err = errors.New("it grew")
		}
		return done, fmt.Errorf("%s: %s changed during the build: %w", n.Describe(), n.Host(), err)
	}
	return done, nil
}

// copyMerge writes a merged directory's new blocks.
func (c *bulkCopier) copyMerge(j *bulkJob, _ []byte) (int64, error) {
	m := j.merge
	for _, e := range j.extents {
		if e.Logical < m.from {
			continue
		}
		from := (e.Logical - m.from) * plan.BlockSize
		if _, err := c.image.WriteAt(m.content[from:from+e.Len*plan.BlockSize], int64(e.Physical)*plan.BlockSize); err != nil {
			return 0, fmt.Errorf("write the entries of %s into the image: %w", m.dir.Path(), err)
		}
	}
	return 0, nil
}

// preadFull reads len(b) bytes at off unless the file ends first.
func preadFull(fd int, b []byte, off int64) (int, error) {
	n := 0
	for n < len(b) {
		m, err := unix.Pread(fd, b[n:], off+int64(n))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			return n, nil
		}
		n += m
	}
	return n, nil
}
