package closure

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"

	"github.com/mkext4fs/mkext4fs/internal/dirent"
	"github.com/mkext4fs/mkext4fs/internal/sched"
	"golang.org/x/sys/unix"
)

// HashOptions say where Hash finds the files and what it checks.
type HashOptions struct {
	// Root is prepended to every store path to find its files: store path
	// /nix/store/x is read from Root/nix/store/x. Empty means "/".
	Root string
	// Verify hashes the paths whose hash the graph carries as well, and
	// fails when the files disagree with it.
	Verify bool
	// Background hashes at a lower priority (see internal/sched), for
	// hashing alongside work that should go first.
	Background bool
	// Workers bounds how many store paths are hashed at once; 0 means
	// GOMAXPROCS.
	Workers int
	// Held of the workers (at most all but one) start only once Release
	// is closed: a caller busy with work of its own on a core hashes on
	// the others until it is done, then on all of them.
	Held    int
	Release <-chan struct{}
	// Small, when set, is given every regular file of at most SmallSize
	// bytes (less than 1 MiB) that is hashed (once for each of its
	// names), with its lstat and its whole content, valid only during the
	// call. It is called from several goroutines at once.
	Small     func(st *unix.Stat_t, content []byte)
	SmallSize int64
}

// readBufferSize is the size of the reads from a file. Large reads keep the
// number of system calls and writes per byte low; SHA-256 is then
// the only per-byte cost.
const readBufferSize = 1 << 20

// Hash computes the NAR hash and size of the store paths whose graph entry
// lacks them and, with Verify, checks the ones it has. It reads Root+Path
// with lstat only (symlinks are serialized, never followed), streams file
// contents through the hash, and works on several store paths at once. A
// path whose graph entry has a hash but NAR size 0 (as old registrations
// have) is hashed too, and a hash that then disagrees is an error even
// without Verify. Errors name the store path; on error the closure is left
// partly updated.
func (c *Closure) Hash(ctx context.Context, opts HashOptions) error {
	root := opts.Root
	if root == "" {
		root = "/"
	}
	if opts.Small != nil && opts.SmallSize >= readBufferSize {
		return fmt.Errorf("internal error: small files of up to %d bytes do not fit the read buffer", opts.SmallSize)
	}
	var todo []int
	for i := range c.Paths {
		if needsHash(&c.Paths[i], opts.Verify) {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	// Largest first, where the graph tells the size, so that one big path
	// does not start last and keep a single core busy at the end.
	sort.SliceStable(todo, func(a, b int) bool { return c.Paths[todo[a]].NarSize > c.Paths[todo[b]].NarSize })

	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, len(todo))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
		jobs     = make(chan int)
	)
	fail := func(err error) {
		once.Do(func() { firstErr = err; cancel() })
	}
	held := 0
	if opts.Release != nil {
		held = min(opts.Held, workers-1)
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if w >= workers-held {
				select {
				case <-opts.Release:
				case <-ctx.Done():
					return
				}
			}
			if opts.Background {
				sched.Background()
			}
			h := newNarHasher()
			h.small, h.smallSize = opts.Small, opts.SmallSize
			for i := range jobs {
				if err := c.hashSafely(ctx, h, root, &c.Paths[i]); err != nil {
					fail(err)
				}
			}
		}()
	}
feed:
	for _, i := range todo {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("hashing store paths: %w", err)
	}
	return nil
}

// needsHash reports whether Hash reads store path p.
func needsHash(p *Path, verify bool) bool {
	return verify || p.NarHash == "" || p.NarSize == 0
}

// HashesAll reports whether Hash, with Verify set to verify, reads every
// store path of the closure.
func (c *Closure) HashesAll(verify bool) bool {
	for i := range c.Paths {
		if !needsHash(&c.Paths[i], verify) {
			return false
		}
	}
	return true
}

// hashSafely is hashOne with a bug turned into an error: a panic in a
// worker goroutine would end the program, past the command's recovery.
func (c *Closure) hashSafely(ctx context.Context, h *narHasher, root string, p *Path) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: internal error while hashing it (please report it): %v", p.Path, r)
		}
	}()
	return c.hashOne(ctx, h, root, p)
}

func (c *Closure) hashOne(ctx context.Context, h *narHasher, root string, p *Path) error {
	if err := ctx.Err(); err != nil {
		return nil // the caller reports the cancellation or the first error
	}
	fsPath := filepath.Join(root, p.Path)
	sum, size, err := h.hashPath(ctx, fsPath)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("%s: %w", p.Path, err)
	}
	got := formatNarHash(sum)
	if p.NarHash != "" && (got != p.NarHash || (p.NarSize != 0 && size != p.NarSize)) {
		return fmt.Errorf("%s: the files at %s do not match the graph: NAR hash %s, size %d; the graph says %s, size %d (wrong root directory, or a damaged store?)",
			p.Path, fsPath, got, size, p.NarHash, p.NarSize)
	}
	p.NarHash, p.NarSize = got, size
	return nil
}

// narHasher serializes one store path at a time into SHA-256. A worker
// keeps one, so its buffers are allocated once.
type narHasher struct {
	sum   hash.Hash
	count countingWriter
	bw    *bufio.Writer
	buf   []byte
	// dirBuf receives directory entries.
	dirBuf []byte
	// small, when set, sees the files of at most smallSize bytes
	// (HashOptions.Small).
	small     func(st *unix.Stat_t, content []byte)
	smallSize int64
}

// countingWriter feeds the hash and counts the NAR's bytes.
type countingWriter struct {
	w io.Writer
	n uint64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += uint64(n)
	return n, err
}

func newNarHasher() *narHasher {
	h := &narHasher{sum: sha256.New(), buf: make([]byte, readBufferSize), dirBuf: make([]byte, 32<<10)}
	h.count.w = h.sum
	// The encoder emits its framing as many 8-byte writes; the buffer
	// turns them into few hash updates. File contents, written in large
	// pieces, go past it.
	h.bw = bufio.NewWriterSize(&h.count, 64<<10)
	return h
}

// hashPath returns the SHA-256 and the length of the NAR serialization of
// the file tree at fsPath.
func (h *narHasher) hashPath(ctx context.Context, fsPath string) ([]byte, uint64, error) {
	h.sum.Reset()
	h.count.n = 0
	if err := h.encode(ctx, &h.count, fsPath); err != nil {
		return nil, 0, err
	}
	return h.sum.Sum(nil), h.count.n, nil
}

// encode writes the NAR serialization of the file tree at fsPath to w.
func (h *narHasher) encode(ctx context.Context, w io.Writer, fsPath string) error {
	h.bw.Reset(w)
	e := &narEncoder{w: h.bw}
	if err := e.begin(); err != nil {
		return err
	}
	if err := h.walk(ctx, e, unix.AT_FDCWD, fsPath, fsPath, 0); err != nil {
		return err
	}
	return h.bw.Flush()
}

// walk writes the node at fsPath and everything below it. The node is
// looked up as at in the directory open at dirfd: its name, or fsPath
// itself with AT_FDCWD.
func (h *narHasher) walk(ctx context.Context, e *narEncoder, dirfd int, at, fsPath string, depth int) error {
	var st unix.Stat_t
	if err := retry(func() error { return unix.Fstatat(dirfd, at, &st, unix.AT_SYMLINK_NOFOLLOW) }); err != nil {
		return &os.PathError{Op: "lstat", Path: fsPath, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		target, err := dirent.Readlink(dirfd, at)
		if err != nil {
			return &os.PathError{Op: "readlink", Path: fsPath, Err: err}
		}
		return e.symlink(target)

	case unix.S_IFDIR:
		if err := e.beginDirectory(); err != nil {
			return err
		}
		var fd int
		err := retry(func() (err error) {
			fd, err = unix.Openat(dirfd, at, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			return err
		})
		if err != nil {
			return &os.PathError{Op: "open", Path: fsPath, Err: err}
		}
		names, err := dirent.ReadNames(fd, h.dirBuf)
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("reading directory %s: %w", fsPath, err)
		}
		if depth+1 >= dirent.MaxOpenDepth {
			unix.Close(fd)
			fd = unix.AT_FDCWD
		} else {
			defer unix.Close(fd)
		}
		for _, name := range names {
			if err := e.beginEntry(name); err != nil {
				return err
			}
			child := fsPath + "/" + name
			childAt := name
			if fd == unix.AT_FDCWD {
				childAt = child
			}
			if err := h.walk(ctx, e, fd, childAt, child, depth+1); err != nil {
				return err
			}
			if err := e.endEntry(); err != nil {
				return err
			}
		}
		return e.endDirectory()

	case unix.S_IFREG:
		// Nix marks a file executable when its owner may execute it.
		size := uint64(st.Size)
		if err := e.beginRegular(st.Mode&0o100 != 0, size); err != nil {
			return err
		}
		if err := h.copyFile(ctx, e, dirfd, at, fsPath, &st); err != nil {
			return err
		}
		return e.endRegular(size)

	default:
		return fmt.Errorf("%s: cannot be put in a NAR: it is a %s, not a file, directory or symlink", fsPath, typeName(st.Mode))
	}
}

// copyFile streams the file's contents into the NAR and checks that it
// still has the size its header announced, that of its lstat st.
func (h *narHasher) copyFile(ctx context.Context, e *narEncoder, dirfd int, at, fsPath string, st *unix.Stat_t) error {
	size := st.Size
	// A small file is read whole into the buffer, for h.small, with room
	// left to see that it ends there.
	small := h.small != nil && size <= h.smallSize && size < int64(len(h.buf))
	var fd int
	err := retry(func() (err error) {
		fd, err = unix.Openat(dirfd, at, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return &os.PathError{Op: "open", Path: fsPath, Err: err}
	}
	defer unix.Close(fd)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		buf := h.buf
		if small {
			buf = h.buf[n:]
		}
		m, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "read", Path: fsPath, Err: err}
		}
		if m == 0 {
			break
		}
		if n+int64(m) > size {
			return fmt.Errorf("%s: file grew while it was being hashed (expected %d bytes)", fsPath, size)
		}
		if _, err := e.w.Write(buf[:m]); err != nil {
			return err
		}
		n += int64(m)
	}
	if n != size {
		return fmt.Errorf("%s: file shrank while it was being hashed (read %d of %d bytes)", fsPath, n, size)
	}
	if small {
		h.small(st, h.buf[:size])
	}
	return nil
}

// retry runs a system call again while a signal interrupts it.
func retry(call func() error) error {
	for {
		if err := call(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func typeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "named pipe"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	default:
		return "special file"
	}
}
