package plan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Spill is where a streamed tree keeps the store paths it let go of (see
// Stream): a file of the caller's, written once and read back by the
// checks made after the script.
type Spill interface {
	io.WriterAt
	io.ReaderAt
}

// Stream is Walk for a closure too large to hold in memory at once: it
// reads what lies outside the store directory and looks at every store
// path's top entry, and returns while the store paths are read in the
// background, a few ahead of the caller. The caller takes them in order:
// Await before it looks at a store path's content, Release once it is
// done with it (debugfsgen.Generate does both). Release sums up the store
// path, writes it to spill and drops its nodes, but for those the script
// still needs (Bulk files, and staged directories with their entries
// until ReleaseStaged), so that the tree in memory stays about the size
// of one store path.
//
// The tree's methods see the released store paths as they were walked:
// Need, Stats, HasStaged and Pads from their sums, Settle,
// CheckUnchanged and CheckReadable read them back from spill. Walk and
// Children see only the nodes in memory. Options.Optimise is refused: it
// compares every file with every other.
func Stream(ctx context.Context, opts Options, spill Spill) (*Tree, error) {
	if opts.Optimise {
		return nil, errors.New("internal error: a streamed walk cannot optimise")
	}
	t, storeDir, err := newTree(opts)
	if err != nil {
		return nil, err
	}
	store := t.Store

	paths := append([]string(nil), opts.StorePaths...)
	sort.Strings(paths)
	w := &walker{ctx: ctx, opts: opts, buf: make([]byte, readWhole)}
	// Every store path's top entry is looked at first: the store
	// directory's staging depends on their names and kinds.
	tops := make([]*Node, len(paths))
	for i, sp := range paths {
		name, err := storeName(sp, storeDir)
		if err != nil {
			return nil, err
		}
		if i > 0 && paths[i-1] == sp {
			return nil, fmt.Errorf("%s: two entries of that name", filepath.Join(storeDir, name))
		}
		host := hostOf(opts.Root, sp)
		st, err := lstatAt(unix.AT_FDCWD, host, host, sp)
		if err != nil {
			return nil, err
		}
		kind := File
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			kind = Dir
		case unix.S_IFLNK:
			kind = Symlink
		}
		tops[i] = &Node{Name: name, Kind: kind, parent: store}
		tops[i].set(top, true)
	}
	store.m().children = tops
	if err := w.outside(t, storeDir); err != nil {
		return nil, err
	}
	t.markStaged(opts.StageBytes)

	s := &stream{
		spill: spill, ready: make([]chan struct{}, len(paths)),
		results: make([]streamed, len(paths)), taken: make([]bool, len(paths)), sums: map[*Node]*summary{},
	}
	for i := range s.ready {
		s.ready[i] = make(chan struct{})
	}
	t.stream = s
	ctx, s.cancel = context.WithCancel(ctx)
	s.ctx = ctx
	workers := w.workers()
	// The walk runs ahead of the caller by up to window store paths: a
	// store path of large files to scan holds the caller up, not the
	// other workers.
	window := make(chan struct{}, 16*workers)
	s.window = window
	next := make(chan int)
	for k := 0; k < workers; k++ {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			buf, scanBuf := make([]byte, readWhole), make([]byte, 1<<20)
			for i := range next {
				s.results[i] = s.walkOne(ctx, opts, store, tops[i], paths[i], buf, scanBuf)
				close(s.ready[i])
			}
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(next)
		for i := range paths {
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				return
			}
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	return t, nil
}

// storeName is the name of store path sp in the store directory.
func storeName(sp, storeDir string) (string, error) {
	name := strings.TrimPrefix(sp, storeDir+"/")
	if name == sp || name == "" || strings.Contains(name, "/") || name == "." || name == ".." {
		return "", fmt.Errorf("store path %s is not directly under %s", sp, storeDir)
	}
	return name, nil
}

// hostOf is where store path sp is read from.
func hostOf(root, sp string) string {
	if root == "" {
		return sp
	}
	return filepath.Join(root, sp)
}

// stream is the state of a streamed tree.
type stream struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	window chan struct{}
	// ready[i] is closed once results[i] is set.
	ready   []chan struct{}
	results []streamed
	// taken[i] is set once Await took results[i].
	taken []bool
	spill Spill
	// spilled is the length of spill.
	spilled int64
	// sums holds the released store paths' sums, by their node.
	sums map[*Node]*summary
}

// streamed is one store path as a worker read it.
type streamed struct {
	n   *Node
	err error
}

// walkOne reads store path sp, whose top entry Stream looked at as first,
// as Walk does, and scans and marks its files and directories.
func (s *stream) walkOne(ctx context.Context, opts Options, store, first *Node, sp string, buf, scanBuf []byte) streamed {
	sub := &walker{ctx: ctx, opts: opts, buf: buf}
	n, err := sub.walk(hostOf(opts.Root, sp), first.Name, sp, opts.UID, opts.GID)
	if err != nil {
		return streamed{err: err}
	}
	if n.Kind != first.Kind {
		return streamed{err: fmt.Errorf("%s: %s changed during the build", describe(n.Host(), sp), hostOf(opts.Root, sp))}
	}
	n.parent = store
	n.set(top, true)
	n.Deferred = first.Deferred
	if err := sub.scanInline(scanBuf); err != nil {
		return streamed{err: err}
	}
	sub.markBulk()
	markStagedUnder(n, opts.StageBytes)
	return streamed{n: n}
}

// scanInline scans the walker's pending files one after the other,
// reading them into buf.
func (w *walker) scanInline(buf []byte) error {
	for _, n := range w.pending {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		if err := w.scanOne(n, buf); err != nil {
			return err
		}
	}
	return nil
}

// outside walks what lies outside the store directory: Options.Files
// and Options.Extra.
func (w *walker) outside(t *Tree, storeDir string) error {
	if w.opts.Files != "" {
		if err := w.addFiles(t, w.opts.Files); err != nil {
			return err
		}
	}
	if err := w.addExtra(t, storeDir); err != nil {
		return err
	}
	if err := w.scan(); err != nil {
		return err
	}
	w.markBulk()
	return nil
}

// Await waits until the store path n (a child of the store directory) is
// read, puts what was read in place of n and returns it. On a tree that
// is not streamed (see Stream) it returns n. The error is the walk's for
// that store path.
func (t *Tree) Await(n *Node) (*Node, error) {
	s := t.stream
	if s == nil || n.parent != t.Store {
		return n, nil
	}
	ch := t.Store.Children()
	i := sort.Search(len(ch), func(i int) bool { return ch[i].Name >= n.Name })
	if i == len(ch) || ch[i] != n {
		return nil, fmt.Errorf("internal error: %s is not a store path of the tree", n.Name)
	}
	if s.taken[i] {
		return n, nil
	}
	s.taken[i] = true
	select {
	case <-s.ready[i]:
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	}
	r := s.results[i]
	s.results[i] = streamed{}
	<-s.window
	if r.err != nil {
		return nil, r.err
	}
	ch[i] = r.n
	return r.n, nil
}

// Streamed reports whether the tree is Stream's.
func (t *Tree) Streamed() bool { return t.stream != nil }

// Close stops a streamed tree's background reads and waits for them.
func (t *Tree) Close() {
	if s := t.stream; s != nil {
		s.cancel()
		s.wg.Wait()
	}
}
