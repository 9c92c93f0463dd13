package plan

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"strings"
	"sync"
	"sync/atomic"

	"github.com/mkext4fs/mkext4fs/internal/dirent"
	"golang.org/x/sys/unix"
)

// BlockSize is the filesystem block size the plan is made for.
const BlockSize = 4096

// NixbldGID is the group of /nix/store on a NixOS system.
const NixbldGID = 30000

// Extra is a file the tool adds to the image itself, such as the
// registration.
type Extra struct {
	// Path is the absolute path in the image.
	Path string
	// Host is the file it is copied from; its mode is kept.
	Host string
}

// Options say what goes into the image.
type Options struct {
	// Root is prefixed to every store path to find it on this machine
	// ("" reads the store paths where they are).
	Root string
	// StoreDir is the store directory, /nix/store by default.
	StoreDir string
	// StorePaths are the absolute store paths of the closure.
	StorePaths []string
	// Files is a host directory whose content is copied to the image root.
	Files string
	// Extra files, added after the rest.
	Extra []Extra
	// UID and GID own everything under the store directory.
	UID, GID uint32
	// Optimise stores identical regular files (same content and mode) once,
	// as hard links.
	Optimise bool
	// Workers bounds the concurrent file scans (0: GOMAXPROCS).
	Workers int
	// StageBytes: directories whose entries take more bytes than this are
	// staged (0: DefaultStageBytes; negative: never).
	StageBytes int64
	// BulkBlocks, when positive, marks Bulk every regular file of at
	// least this many blocks, none of them all zeros, with plain
	// permission bits (no set-id or sticky bit): the caller copies their
	// content into the image itself (see Node.Bulk).
	BulkBlocks int64
	// DeferSmall leaves the small files of the store paths unread (those
	// of at most Tree.SmallSize bytes; none under Optimise): their Blocks
	// are an upper bound and they are marked Estimated, until the caller,
	// who reads every one of them later, gives what it found to Settle.
	DeferSmall bool
}

// smallSize is the size up to which DeferSmall leaves store files unread;
// -1 when it leaves none.
func (o *Options) smallSize() int64 {
	if !o.DeferSmall || o.Optimise {
		return -1 // Optimise reads every file for its digest
	}
	if o.BulkBlocks > 0 && o.BulkBlocks <= SmallBlocks {
		// A file that may go in bulk is read: its runs are needed now.
		return (o.BulkBlocks - 1) * BlockSize
	}
	return SmallBlocks * BlockSize
}

// SmallBlocks is the size in blocks up to which DeferSmall leaves files
// unread. A file that small has at most two runs of data, so its extents
// fit in its inode whatever its content: only its count of blocks is
// unknown.
const SmallBlocks = 4

// DefaultStageBytes is the size of a directory's entries above which the
// script links its entries in through a staging directory: about four
// blocks, where the linear scans debugfs makes for every insert start to
// cost more than the three commands a staged entry takes.
const DefaultStageBytes = 4 * BlockSize

// Walk reads everything that goes into the image and plans it.
func Walk(ctx context.Context, opts Options) (*Tree, error) {
	t, storeDir, err := newTree(opts)
	if err != nil {
		return nil, err
	}
	store := t.Store
	w := &walker{ctx: ctx, opts: opts, buf: make([]byte, readWhole)}
	for _, sp := range opts.StorePaths {
		if _, err := storeName(sp, storeDir); err != nil {
			return nil, err
		}
	}
	if err := w.walkStore(store, storeDir); err != nil {
		return nil, err
	}
	if opts.Files != "" {
		if err := w.addFiles(t, opts.Files); err != nil {
			return nil, err
		}
	}
	if err := w.addExtra(t, storeDir); err != nil {
		return nil, err
	}
	if err := w.scan(); err != nil {
		return nil, err
	}
	w.markBulk()
	t.markStaged(opts.StageBytes)
	if opts.Optimise {
		t.optimise()
	}
	return t, nil
}

// newTree makes the tree of an image with nothing but its store
// directory, and returns the store directory's path.
func newTree(opts Options) (*Tree, string, error) {
	storeDir := opts.StoreDir
	if storeDir == "" {
		storeDir = "/nix/store"
	}
	storeDir = filepath.Clean(storeDir)
	if !filepath.IsAbs(storeDir) {
		return nil, "", fmt.Errorf("store directory %q is not absolute", storeDir)
	}
	t := &Tree{Root: &Node{Kind: Dir, Perm: 0o755}}
	store, err := t.Root.mkdirAll(storeDir)
	if err != nil {
		return nil, "", err
	}
	store.Perm = 0o1775
	store.GID = NixbldGID
	t.Store = store
	t.small = opts.smallSize()
	t.deferred = t.small >= 0
	return t, storeDir, nil
}

// addExtra adds Options.Extra.
func (w *walker) addExtra(t *Tree, storeDir string) error {
	for _, e := range w.opts.Extra {
		if !filepath.IsAbs(e.Path) || filepath.Clean(e.Path) != e.Path || e.Path == "/" {
			return fmt.Errorf("%s: not a clean absolute path in the image", e.Path)
		}
		dir, err := t.Root.mkdirAll(filepath.Dir(e.Path))
		if err != nil {
			return err
		}
		if isUnder(e.Path, storeDir) {
			return fmt.Errorf("%s: inside the store directory", e.Path)
		}
		n, err := w.walk(e.Host, filepath.Base(e.Path), "", 0, 0)
		if n != nil {
			n.set(extra, true)
		}
		if err != nil {
			return err
		}
		if n.Kind != File {
			return fmt.Errorf("%s: %s is a %s, not a file", e.Path, e.Host, n.Kind)
		}
		if err := dir.add(n); err != nil {
			return err
		}
	}
	return nil
}

// MaxBulkRuns is the most runs of data (between blocks of zeros) a bulk
// file may have: each costs a few commands.
const MaxBulkRuns = 8

// markBulk marks the files of the image that are copied in bulk: those of
// at least BulkBlocks blocks, with at most MaxBulkRuns runs of data
// between blocks of zeros (which are left out, as debugfs' write leaves
// them out) and plain permissions its owner can read (debugfs reads the
// empty file of those permissions it is made from). Extras (the files the
// tool makes) never are.
func (w *walker) markBulk() {
	for _, n := range w.files {
		blocks := (n.Size + BlockSize - 1) / BlockSize
		if w.opts.BulkBlocks > 0 && blocks >= w.opts.BulkBlocks && len(n.Data()) > 0 && len(n.Data()) <= MaxBulkRuns &&
			n.Perm&^0o777 == 0 && n.Perm&0o400 != 0 && !n.is(extra) {
			n.Bulk = true
		} else if n.more != nil {
			n.more.data = nil
			n.trimMore()
		}
	}
}

// walkStore walks the store paths, several at a time, into store. The
// result, and the error when several paths fail, are those of a walk in
// order.
func (w *walker) walkStore(store *Node, storeDir string) error {
	type result struct {
		n              *Node
		files, pending []*Node
		err            error
	}
	paths := w.opts.StorePaths
	results := make([]result, len(paths))
	next := make(chan int)
	var wg sync.WaitGroup
	workers := w.workers()
	for k := 0; k < workers; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, readWhole)
			for i := range next {
				sp := paths[i]
				host := hostOf(w.opts.Root, sp)
				sub := &walker{ctx: w.ctx, opts: w.opts, buf: buf}
				n, err := sub.walk(host, strings.TrimPrefix(sp, storeDir+"/"), sp, w.opts.UID, w.opts.GID)
				results[i] = result{n, sub.files, sub.pending, err}
			}
		}()
	}
	for i := range paths {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, r := range results {
		if r.err != nil {
			return r.err
		}
		if err := store.add(r.n); err != nil {
			return err
		}
		r.n.set(top, true)
		w.files = append(w.files, r.files...)
		w.pending = append(w.pending, r.pending...)
	}
	return nil
}

func isUnder(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

type walker struct {
	ctx  context.Context
	opts Options
	// files are the regular files, all; pending those left for scan.
	files, pending []*Node
	// buf holds small files read during the walk.
	buf []byte
}

// workers is how many goroutines read at a time: Options.Workers, or
// GOMAXPROCS.
func (w *walker) workers() int {
	if w.opts.Workers > 0 {
		return w.opts.Workers
	}
	return runtime.GOMAXPROCS(0)
}

// walk reads the host entry at host (never following a symlink) as the
// image entry called name.
func (w *walker) walk(host, name, storePath string, uid, gid uint32) (*Node, error) {
	if err := w.ctx.Err(); err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Lstat(host, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", describe(host, storePath), &os.PathError{Op: "lstat", Path: host, Err: err})
	}
	n, err := w.entry(unix.AT_FDCWD, host, host, name, storePath, uid, gid, &st, 0)
	if err == nil && n.Kind != Dir {
		n.SetHost(host)
	}
	return n, err
}

// entry makes the node of a host entry whose lstat is st; at names it
// relative to the directory open at dirfd (or is host, with AT_FDCWD).
// Directories are read through descriptors, so that each name is looked
// up once in its own directory rather than along the whole path.
func (w *walker) entry(dirfd int, at, host, name, storePath string, uid, gid uint32, st *unix.Stat_t, depth int) (*Node, error) {
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		n, err := leaf(dirfd, at, host, name, storePath, uid, gid, st, w.buf, w.opts)
		if err != nil {
			return nil, err
		}
		w.adopt(n)
		return n, nil
	}
	n := &Node{Name: name, Kind: Dir, Perm: uint32(st.Mode) & 0o7777, UID: uid, GID: gid, more: &nodeMore{host: host}, id: idOf(st)}
	fd, err := unix.Openat(dirfd, at, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", describe(host, storePath), &os.PathError{Op: "open", Path: host, Err: err})
	}
	names, err := dirent.ReadNames(fd, nil)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %w", describe(host, storePath), &os.PathError{Op: "readdirent", Path: host, Err: err})
	}
	if depth >= dirent.MaxOpenDepth {
		unix.Close(fd)
		fd = unix.AT_FDCWD
	} else {
		defer unix.Close(fd)
	}
	// A large directory's files and symlinks are looked at by several
	// goroutines first; the loop below takes their nodes in name order.
	var ahead []lookedAt
	if fd != unix.AT_FDCWD && len(names) >= parallelNames {
		if ahead, err = w.lookAhead(fd, host, names, storePath, uid, gid); err != nil {
			return nil, err
		}
	}
	children := make([]*Node, 0, len(names))
	for i, cn := range names {
		if err := w.ctx.Err(); err != nil {
			return nil, err
		}
		ch, at := childPaths(fd, host, cn)
		var c *Node
		if ahead != nil {
			a := &ahead[i]
			switch {
			case a.err != nil:
				return nil, a.err
			case a.node != nil:
				w.adopt(a.node)
				c = a.node
			default: // a directory
				if c, err = w.entry(fd, at, ch, cn, storePath, uid, gid, a.dir, depth+1); err != nil {
					return nil, err
				}
			}
		} else {
			cst, err := lstatAt(fd, at, ch, storePath)
			if err != nil {
				return nil, err
			}
			if c, err = w.entry(fd, at, ch, cn, storePath, uid, gid, &cst, depth+1); err != nil {
				return nil, err
			}
		}
		if c.Kind != Dir {
			if strings.HasSuffix(host, "/") {
				c.SetHost(ch)
			} else {
				c.set(inDir, true) // ch is host + "/" + cn
			}
		}
		c.parent = n
		children = append(children, c)
	}
	n.more.children = children
	return n, nil
}

// adopt records a file node in the walk's lists.
func (w *walker) adopt(n *Node) {
	if n.Kind == File {
		w.files = append(w.files, n)
		if n.Size > readWhole {
			w.pending = append(w.pending, n)
		}
	}
}

// leaf makes the node of a host file or symlink whose lstat is st, as
// entry does; a file of up to readWhole bytes is read into buf now, from
// its directory (scan reads the larger ones).
func leaf(dirfd int, at, host, name, storePath string, uid, gid uint32, st *unix.Stat_t, buf []byte, opts Options) (*Node, error) {
	n := &Node{Name: name, Perm: uint32(st.Mode) & 0o7777, UID: uid, GID: gid, id: idOf(st)}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		n.Kind = File
		n.Size = st.Size
		n.Links = 1
		if n.Size > readWhole {
			return n, nil // scan reads it
		}
		if storePath != "" && n.Size <= opts.smallSize() {
			// Every block may hold data, in at most two runs (SmallBlocks).
			n.Blocks = (n.Size + BlockSize - 1) / BlockSize
			n.Runs = min(n.Blocks, 2)
			n.Estimated = true
			return n, nil
		}
		src := source{host, storePath}
		if err := scanSafely(n, src, buf, opts.Optimise, opts.BulkBlocks, func() (int, error) { return n.openAt(dirfd, at, src) }); err != nil {
			return nil, err
		}
	case unix.S_IFLNK:
		n.Kind = Symlink
		n.Perm = 0o777
		target, err := dirent.Readlink(dirfd, at)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", describe(host, storePath), &os.PathError{Op: "readlink", Path: host, Err: err})
		}
		n.target = &target
	default:
		where := describe(host, storePath)
		if where != host {
			where += ": " + host
		}
		return nil, fmt.Errorf("%s: unsupported file type %s (a store holds only files, directories and symlinks)",
			where, os.FileMode(0).Type()|fileModeType(st.Mode))
	}
	return n, nil
}

// childPaths gives the host path of the entry cn of the directory host,
// and the name to look it up by: relative to the directory open at fd, or
// the whole path with AT_FDCWD.
func childPaths(fd int, host, cn string) (ch, at string) {
	ch = host + "/" + cn
	if strings.HasSuffix(host, "/") {
		ch = host + cn
	}
	if fd == unix.AT_FDCWD {
		return ch, ch
	}
	return ch, cn
}

// lstatAt reads the lstat of the entry at (see childPaths) whose host path
// is ch.
func lstatAt(fd int, at, ch, storePath string) (unix.Stat_t, error) {
	var st unix.Stat_t
	var err error
	if len(ch) >= unix.PathMax {
		// Walked through descriptors it could be read, but nothing
		// could open it by its path later.
		err = unix.ENAMETOOLONG
	} else {
		err = unix.Fstatat(fd, at, &st, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err != nil {
		return st, fmt.Errorf("%s: %w", describe(ch, storePath), &os.PathError{Op: "lstat", Path: ch, Err: err})
	}
	return st, nil
}

// parallelNames is the number of entries from which a directory's files
// and symlinks are looked at by several goroutines: a store path of one
// huge directory would otherwise be read by one. (A variable for tests.)
var parallelNames = 1024

// lookedAt is what lookAhead found of one name: the node of a file or
// symlink, the lstat of a directory, or the error entry would return.
type lookedAt struct {
	node *Node
	dir  *unix.Stat_t
	err  error
}

// lookAhead looks at the entries names of the directory open at fd, as
// entry would, several at a time; directories are left to entry.
func (w *walker) lookAhead(fd int, host string, names []string, storePath string, uid, gid uint32) ([]lookedAt, error) {
	out := make([]lookedAt, len(names))
	const batch = 128
	var next atomic.Int64
	workers := w.workers()
	var wg sync.WaitGroup
	for k := 0; k < workers; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, readWhole)
			for w.ctx.Err() == nil {
				from := int(next.Add(batch)) - batch
				if from >= len(names) {
					return
				}
				for i := from; i < from+batch && i < len(names); i++ {
					ch, at := childPaths(fd, host, names[i])
					st, err := lstatAt(fd, at, ch, storePath)
					switch {
					case err != nil:
						out[i].err = err
					case st.Mode&unix.S_IFMT == unix.S_IFDIR:
						out[i].dir = &st
					default:
						out[i].node, out[i].err = leaf(fd, at, ch, names[i], storePath, uid, gid, &st, buf, w.opts)
					}
				}
			}
		}()
	}
	wg.Wait()
	// Cancelled, some names were not looked at.
	return out, w.ctx.Err()
}

func fileModeType(m uint32) os.FileMode {
	switch m & unix.S_IFMT {
	case unix.S_IFIFO:
		return os.ModeNamedPipe
	case unix.S_IFSOCK:
		return os.ModeSocket
	case unix.S_IFCHR:
		return os.ModeDevice | os.ModeCharDevice
	case unix.S_IFBLK:
		return os.ModeDevice
	}
	return os.ModeIrregular
}

func describe(host, storePath string) string {
	if storePath != "" {
		return "store path " + storePath
	}
	return host
}

func idOf(st *unix.Stat_t) fileID {
	return fileID{
		dev: uint64(st.Dev), ino: uint64(st.Ino),
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(),
		mode: uint32(st.Mode), nlink: uint32(st.Nlink),
	}
}

// addFiles merges the content of a host directory into the image root.
func (w *walker) addFiles(t *Tree, dir string) error {
	src, err := w.walk(dir, "", "", 0, 0)
	if err != nil {
		return fmt.Errorf("--files: %w", err)
	}
	if src.Kind != Dir {
		return fmt.Errorf("--files: %s is not a directory", dir)
	}
	var merge func(into, from *Node) error
	merge = func(into, from *Node) error {
		for _, c := range from.Children() {
			existing := into.Child(c.Name)
			if existing == nil {
				if into == t.Root && c.Name == "lost+found" {
					return fmt.Errorf("--files: %s collides with the lost+found that mkfs makes", c.Host())
				}
				if err := into.add(c); err != nil {
					return err
				}
				continue
			}
			if existing == t.Store {
				return fmt.Errorf("--files: %s would add to the store directory %s", c.Host(), t.Store.Path())
			}
			if existing.Kind != Dir || c.Kind != Dir {
				return fmt.Errorf("--files: %s collides with %s in the image", c.Host(), existing.Path())
			}
			if err := merge(existing, c); err != nil {
				return err
			}
		}
		return nil
	}
	return merge(t.Root, src)
}

// scan reads the regular files the walk left, those over readWhole bytes,
// several at a time (the walk reads the others in their directories):
// like the walk's reads, it counts the blocks debugfs will store and, under
// Optimise, hashes the content.
func (w *walker) scan() error {
	workers := w.workers()
	ctx, cancel := context.WithCancel(w.ctx)
	defer cancel()
	jobs := make(chan *Node)
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for n := range jobs {
				if err := w.scanOne(n, buf); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
						cancel()
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, n := range w.pending {
		select {
		case jobs <- n:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return w.ctx.Err()
}

// scanOne scans the pending file n, reading it into buf.
func (w *walker) scanOne(n *Node, buf []byte) error {
	src := n.source()
	open := func() (int, error) { return n.openAt(unix.AT_FDCWD, src.host, src) }
	return scanSafely(n, src, buf, w.opts.Optimise, w.opts.BulkBlocks, open)
}

// scanSafely is scanFile with a bug turned into an error: a panic in a
// worker goroutine would end the program, past the command's recovery.
func scanSafely(n *Node, src source, buf []byte, hash bool, bulkBlocks int64, open func() (int, error)) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: internal error while reading it (please report it): %v", src.host, r)
		}
	}()
	return scanFile(n, src, buf, hash, bulkBlocks, open)
}

// source names a node's host file for messages, while the node may not
// be in the tree yet.
type source struct{ host, storePath string }

func (s source) String() string { return describe(s.host, s.storePath) }

// source is the node's host file and store path, for messages.
func (n *Node) source() source { return source{n.Host(), n.StorePath()} }

var zeroBlock [BlockSize]byte

// readWhole is the size up to which a file is read whole rather than
// looked through for holes with SEEK_DATA and SEEK_HOLE.
const readWhole = 64 << 10

// blockCount counts the blocks of a file that debugfs' write stores, those
// not all zeros, and the runs they form, from pieces of the file read in
// order from block boundaries.
type blockCount struct {
	blocks, runs int64
	lastEnd      int64 // offset just past the last block of data; -1 before any
	// record keeps the runs in data, up to MaxBulkRuns+1 of them.
	record bool
	data   [][2]int64
}

func newBlockCount(record bool) *blockCount {
	return &blockCount{lastEnd: -1, record: record}
}

// add counts chunk, the bytes of the file from offset off.
func (c *blockCount) add(chunk []byte, off int64) {
	for b := 0; b < len(chunk); b += BlockSize {
		end := min(b+BlockSize, len(chunk))
		if bytes.Equal(chunk[b:end], zeroBlock[:end-b]) {
			continue
		}
		c.blocks++
		if off+int64(b) != c.lastEnd {
			c.runs++
			if c.record && len(c.data) <= MaxBulkRuns {
				c.data = append(c.data, [2]int64{(off + int64(b)) / BlockSize, 0})
			}
		}
		if c.record && len(c.data) <= MaxBulkRuns {
			c.data[len(c.data)-1][1]++
		}
		c.lastEnd = off + int64(end)
		if end-b < BlockSize {
			c.lastEnd = off + int64(b) + BlockSize
		}
	}
}

// DataBlocks returns the blocks debugfs' write stores of a file whose
// whole content is content, and the runs they form: those of its 4 KiB
// blocks that are not all zeros.
func DataBlocks(content []byte) (blocks, runs int64) {
	c := newBlockCount(false)
	c.add(content, 0)
	return c.blocks, c.runs
}

// scanFile reads file n, opened by open, and sets its Blocks, Runs, Data
// and, with hash, its digest.
func scanFile(n *Node, src source, buf []byte, hash bool, bulkBlocks int64, open func() (int, error)) error {
	if n.Size == 0 && !hash {
		return nil // nothing to read; CheckUnchanged catches a change
	}
	fd, err := open()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// A file that may go in bulk: note where its data is.
	count := newBlockCount(bulkBlocks > 0 && (n.Size+BlockSize-1)/BlockSize >= bulkBlocks)
	var (
		h   = sha256.New()
		pos int64
	)
	readRange := func(from, to int64) error {
		for off := from; off < to; {
			want := int64(len(buf))
			if to-off < want {
				want = to - off
			}
			got, err := unix.Pread(fd, buf[:want], off)
			if got == 0 && err == nil {
				err = io.EOF
			}
			if got > 0 {
				count.add(buf[:got], off)
				if hash {
					h.Write(buf[:got])
				}
				off += int64(got)
			}
			if err == io.EOF && off < to {
				return fmt.Errorf("%s: %s shrank while it was being read", src, src.host)
			}
			if err != nil && err != io.EOF {
				return fmt.Errorf("%s: read %s: %w", src, src.host, err)
			}
		}
		return nil
	}
	size := n.Size // OpenFile checked it is still the file's size
	if hash || size <= readWhole {
		// The digest needs every byte, holes included. A small file is
		// read in one go too: a hole reads as zeros, and blocks of zeros
		// are left out as debugfs leaves them out, so the count is the
		// same without the system calls that look for the holes.
		if err := readRange(0, size); err != nil {
			return err
		}
	} else {
		for pos < size {
			data, err := unix.Seek(fd, pos, unix.SEEK_DATA)
			if errors.Is(err, unix.ENXIO) {
				break
			}
			if err != nil {
				// No SEEK_DATA here: read it all.
				if err := readRange(pos, size); err != nil {
					return err
				}
				break
			}
			hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
			if err != nil {
				hole = size
			}
			// Like debugfs, look at whole blocks around the data.
			from := data &^ (BlockSize - 1)
			to := (hole + BlockSize - 1) &^ (BlockSize - 1)
			if to > size {
				to = size
			}
			if err := readRange(from, to); err != nil {
				return err
			}
			pos = hole
		}
	}
	n.Blocks = count.blocks
	n.Runs = count.runs
	if count.data != nil {
		n.m().data = count.data
	}
	if hash {
		n.m().digest = (*[32]byte)(h.Sum(nil))
	}
	return nil
}

// maxLinkPath bounds the paths that hard links are made to: the script
// names the first file by its path, and debugfs reads lines of 8 KiB.
const maxLinkPath = 2048

// optimise turns every regular file whose content and mode equal those of
// one created before it into a hard link to that one. Creation order is
// the script's: the entries made directly first, then the deferred ones of
// staged directories.
func (t *Tree) optimise() {
	type key struct {
		digest [32]byte
		size   int64
		perm   uint32
		uid    uint32
		gid    uint32
	}
	first := map[key]*Node{}
	for _, deferred := range []bool{false, true} {
		t.Walk(func(n *Node) bool {
			if n.Kind != File || n.Deferred != deferred || n.more == nil || n.more.digest == nil || len(n.Path()) > maxLinkPath {
				return true
			}
			k := key{*n.more.digest, n.Size, n.Perm, n.UID, n.GID}
			if p, ok := first[k]; ok {
				n.more.primary = p
				p.Links++
				t.hardLinks = true
				return true
			}
			first[k] = n
			return true
		})
	}
	// The digests have served: a file that is no hard link and no bulk
	// file keeps no more.
	t.Walk(func(n *Node) bool {
		if n.more != nil && n.more.digest != nil {
			n.more.digest = nil
			n.trimMore()
		}
		return true
	})
}

// OpenFile opens a regular file's host file for reading, never following a
// symlink, and checks that it is the file that was walked, of the same
// size. The caller closes the descriptor (a plain one: an *os.File would
// register with the poller, which costs more than reading a small file).
func (n *Node) OpenFile() (int, error) {
	if n.Kind != File || !n.hasHost() {
		return -1, fmt.Errorf("%s: not a file read from the host", n.Path())
	}
	src := n.source()
	return n.openAt(unix.AT_FDCWD, src.host, src)
}

// openAt is OpenFile with the file named at relative to the directory open
// at dirfd.
func (n *Node) openAt(dirfd int, at string, src source) (int, error) {
	fd, err := unix.Openat(dirfd, at, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("%s: %w", src, &os.PathError{Op: "open", Path: src.host, Err: err})
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: fstat %s: %w", src, src.host, err)
	}
	if id := idOf(&st); id.dev != n.id.dev || id.ino != n.id.ino || st.Size != n.Size {
		unix.Close(fd)
		return -1, fmt.Errorf("%s: %s changed during the build", src, src.host)
	}
	return fd, nil
}

// Describe names a node's host file and store path for messages.
func (n *Node) Describe() string { return n.source().String() }

// sameSize tells whether size, from an lstat of the node's host entry, is
// the size it had when walked: a file's Size, a symlink's target's length.
// A directory's changes with its mtime.
func (n *Node) sameSize(size int64) bool {
	switch n.Kind {
	case File:
		return size == n.Size
	case Symlink:
		return size == int64(len(n.Target()))
	}
	return true
}

// CheckUnchanged compares every host entry with what Walk saw, so that a
// file changed, grown, shrunk or replaced during the build fails it. A
// directory changes with the entries made or removed in it: the error
// names such an entry when there is one, the directory otherwise.
func (t *Tree) CheckUnchanged() error {
	c := &unchangedCheck{t: t}
	c.visit(t.Root, -1, 0)
	if c.err == nil {
		c.err = c.dirErr
	}
	return c.err
}

// unchangedCheck is the state of CheckUnchanged: the first change found
// (err), and the first change of a directory's entries (dirErr), which
// an entry's change named later takes precedence over.
type unchangedCheck struct {
	t           *Tree
	err, dirErr error
}

// visit compares n and then its children, in the order of Tree.Walk. An
// entry read from its parent's host directory under its own name is
// looked up from dirfd, that directory open (or by its path when dirfd
// is -1).
func (c *unchangedCheck) visit(n *Node, dirfd, depth int) {
	if sum := c.t.sumOf(n); sum != nil {
		// A store path the tree released is compared as read back.
		var err error
		if n, err = c.t.load(n, sum); err != nil {
			c.err = err
			return
		}
	}
	if n.hasHost() && n.id.mode != 0 {
		var st unix.Stat_t
		var e error
		if dirfd >= 0 && n.is(inDir) {
			e = unix.Fstatat(dirfd, n.Name, &st, unix.AT_SYMLINK_NOFOLLOW)
		} else {
			e = unix.Lstat(n.Host(), &st)
		}
		if e != nil {
			src := n.source()
			c.err = fmt.Errorf("%s: %s vanished during the build: %w", src, src.host, e)
			return
		}
		now := idOf(&st)
		if now.nlink != n.id.nlink {
			// A hard link made or removed elsewhere (nix-store --optimise)
			// changes the link count and the ctime, not the content.
			now.nlink, now.ctime = n.id.nlink, n.id.ctime
		}
		if now != n.id || !n.sameSize(st.Size) {
			src := n.source()
			changed := fmt.Errorf("%s: %s changed during the build", src, src.host)
			if n.Kind != Dir || now.mode != n.id.mode {
				c.err = changed
				return
			}
			if c.dirErr == nil {
				c.dirErr = changed
			}
		}
	}
	if len(n.Children()) == 0 {
		return
	}
	fd := -1
	if n.host() != "" && n.id.mode != 0 && depth < dirent.MaxOpenDepth {
		// A failure to open it leaves its entries looked up by path.
		if f, err := unix.Open(n.host(), unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err == nil {
			fd = f
			defer unix.Close(fd)
		}
	}
	for _, ch := range n.Children() {
		c.visit(ch, fd, depth+1)
		if c.err != nil {
			return
		}
	}
}
