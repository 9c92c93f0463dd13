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
	"syscall"

	"github.com/mkext4fs/mkext4fs/internal/sched"
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
	var todo []int
	for i := range c.Paths {
		p := &c.Paths[i]
		if opts.Verify || p.NarHash == "" || p.NarSize == 0 {
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
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if opts.Background {
				sched.Background()
			}
			h := newNarHasher()
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
	h := &narHasher{sum: sha256.New(), buf: make([]byte, readBufferSize)}
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
	if err := h.walk(ctx, e, fsPath); err != nil {
		return err
	}
	return h.bw.Flush()
}

// walk writes the node at fsPath and everything below it.
func (h *narHasher) walk(ctx context.Context, e *narEncoder, fsPath string) error {
	fi, err := os.Lstat(fsPath)
	if err != nil {
		return err
	}
	switch mode := fi.Mode(); {
	case mode&os.ModeSymlink != 0:
		target, err := os.Readlink(fsPath)
		if err != nil {
			return err
		}
		return e.symlink(target)

	case mode.IsDir():
		if err := e.beginDirectory(); err != nil {
			return err
		}
		names, err := readDirNames(fsPath)
		if err != nil {
			return err
		}
		for _, name := range names {
			if err := e.beginEntry(name); err != nil {
				return err
			}
			if err := h.walk(ctx, e, fsPath+"/"+name); err != nil {
				return err
			}
			if err := e.endEntry(); err != nil {
				return err
			}
		}
		return e.endDirectory()

	case mode.IsRegular():
		// Nix marks a file executable when its owner may execute it.
		size := uint64(fi.Size())
		if err := e.beginRegular(mode&0o100 != 0, size); err != nil {
			return err
		}
		if err := h.copyFile(ctx, e, fsPath, fi.Size()); err != nil {
			return err
		}
		return e.endRegular(size)

	default:
		return fmt.Errorf("%s: cannot be put in a NAR: it is a %s, not a file, directory or symlink", fsPath, typeName(mode))
	}
}

// readDirNames lists a directory in the bytewise order NAR requires.
func readDirNames(fsPath string) ([]string, error) {
	d, err := os.Open(fsPath)
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("reading directory %s: %w", fsPath, err)
	}
	sort.Strings(names)
	return names, nil
}

// copyFile streams the file's contents into the NAR and checks that it
// still has the size its header announced. It reads with plain system
// calls: an os.File would try to register every file with the poller,
// which costs more than reading a small file.
func (h *narHasher) copyFile(ctx context.Context, e *narEncoder, fsPath string, size int64) error {
	fd, err := openNoFollow(fsPath)
	if err != nil {
		return &os.PathError{Op: "open", Path: fsPath, Err: err}
	}
	defer syscall.Close(fd)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		m, err := syscall.Read(fd, h.buf)
		if errors.Is(err, syscall.EINTR) {
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
		if _, err := e.w.Write(h.buf[:m]); err != nil {
			return err
		}
		n += int64(m)
	}
	if n != size {
		return fmt.Errorf("%s: file shrank while it was being hashed (read %d of %d bytes)", fsPath, n, size)
	}
	return nil
}

func openNoFollow(p string) (int, error) {
	for {
		fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
		if !errors.Is(err, syscall.EINTR) {
			return fd, err
		}
	}
}

func typeName(mode os.FileMode) string {
	switch {
	case mode&os.ModeNamedPipe != 0:
		return "named pipe"
	case mode&os.ModeSocket != 0:
		return "socket"
	case mode&os.ModeCharDevice != 0:
		return "character device"
	case mode&os.ModeDevice != 0:
		return "block device"
	default:
		return "special file"
	}
}
