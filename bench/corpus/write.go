package main

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"

	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixbase32"
	"golang.org/x/sys/unix"
)

const blockSize = 4096

// storeGID is the group of /nix/store on NixOS (nixbld).
const storeGID = 30000

// forEach runs fn for 0..n-1 on workers goroutines and returns the first
// error.
func forEach(n, workers int, fn func(i int, buf []byte) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for i := range next {
				if err := fn(i, buf); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// setTime gives a name (not what a symlink points to) atime and mtime 1.
func setTime(path string) error {
	ts := []unix.Timespec{{Sec: 1}, {Sec: 1}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", path, err)
	}
	return nil
}

func fileMode(exec bool) os.FileMode {
	if exec {
		return 0o555
	}
	return 0o444
}

// writeTree materialises the corpus under root/nix/store: every name, then
// the hardlinks (their targets may live in later paths), then directory
// modes and times (which adding names would disturb).
func writeTree(c *corpus, root string, workers int) error {
	store := filepath.Join(root, "nix", "store")
	if err := os.MkdirAll(store, 0o755); err != nil {
		return err
	}
	links := make([][]*node, len(c.paths))
	err := forEach(len(c.paths), workers, func(i int, buf []byte) error {
		return create(c.paths[i].root, filepath.Join(store, c.paths[i].base), buf, &links[i])
	})
	if err != nil {
		return err
	}
	for _, ls := range links {
		for _, l := range ls {
			if err := os.Link(l.link.host, l.host); err != nil {
				return fmt.Errorf("hardlink %s: %w", l.host, err)
			}
		}
	}
	err = forEach(len(c.paths), workers, func(i int, _ []byte) error {
		return finishDirs(c.paths[i].root)
	})
	if err != nil {
		return err
	}
	if err := os.Chmod(store, 0o755|os.ModeSticky|0o020); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(store, 0, storeGID); err != nil {
			return err
		}
	}
	for _, p := range []string{store, filepath.Join(root, "nix"), root} {
		if err := setTime(p); err != nil {
			return err
		}
	}
	return nil
}

func create(n *node, host string, buf []byte, links *[]*node) error {
	n.host = host
	switch n.kind {
	case kindDir:
		if err := os.Mkdir(host, 0o755); err != nil {
			return err
		}
		for _, ch := range n.children {
			if err := create(ch, filepath.Join(host, ch.name), buf, links); err != nil {
				return err
			}
		}
		return nil
	case kindFile:
		if err := writeFile(n, host, buf); err != nil {
			return err
		}
		return setTime(host)
	case kindSymlink:
		if err := os.Symlink(n.target, host); err != nil {
			return err
		}
		return setTime(host)
	case kindHardlink:
		*links = append(*links, n)
		return nil
	}
	return fmt.Errorf("unknown node kind %d at %s", n.kind, host)
}

func finishDirs(n *node) error {
	if n.kind != kindDir {
		return nil
	}
	for _, ch := range n.children {
		if err := finishDirs(ch); err != nil {
			return err
		}
	}
	if err := os.Chmod(n.host, 0o555); err != nil {
		return err
	}
	return setTime(n.host)
}

// zeroRuns picks the all-zero 4 KiB blocks of a file: a few short runs away
// from its first and last block, as linkers leave between ELF segments.
func zeroRuns(n *node) map[int64]bool {
	blocks := n.size / blockSize
	if !n.zeros || blocks < 5 {
		return nil
	}
	r := rand.New(rand.NewPCG(n.seed, 0x7a65726f))
	z := map[int64]bool{}
	runs := 1 + r.IntN(4)
	for k := 0; k < runs; k++ {
		start := 1 + r.Int64N(blocks-2)
		for b := start; b < start+1+r.Int64N(3) && b < blocks-1; b++ {
			z[b] = true
		}
	}
	return z
}

// writeFile writes pseudo-random content (incompressible, never all zero
// apart from the chosen blocks) in the file's final mode.
func writeFile(n *node, host string, buf []byte) error {
	f, err := os.OpenFile(host, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := writeContent(f, n, buf); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", host, err)
	}
	if err := f.Chmod(fileMode(n.exec)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func writeContent(w io.Writer, n *node, buf []byte) error {
	r := rand.NewPCG(n.seed, ^n.seed)
	zero := zeroRuns(n)
	for off := int64(0); off < n.size; {
		chunk := buf
		if rest := n.size - off; rest < int64(len(chunk)) {
			chunk = chunk[:rest]
		}
		i := 0
		for ; i+8 <= len(chunk); i += 8 {
			binary.LittleEndian.PutUint64(chunk[i:], r.Uint64())
		}
		var tail [8]byte
		binary.LittleEndian.PutUint64(tail[:], r.Uint64())
		copy(chunk[i:], tail[:])
		for b := off / blockSize; b*blockSize < off+int64(len(chunk)); b++ {
			if zero[b] {
				lo := b*blockSize - off
				clear(chunk[lo:min(lo+blockSize, int64(len(chunk)))])
			}
		}
		if _, err := w.Write(chunk); err != nil {
			return err
		}
		off += int64(len(chunk))
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// hashPaths sets narHash and narSize of every path from its NAR
// serialisation.
func hashPaths(c *corpus, root string, workers int) error {
	store := filepath.Join(root, "nix", "store")
	return forEach(len(c.paths), workers, func(i int, _ []byte) error {
		sp := c.paths[i]
		h := sha256.New()
		cw := &countingWriter{w: h}
		if err := nar.DumpPath(cw, filepath.Join(store, sp.base)); err != nil {
			return fmt.Errorf("nar of %s: %w", sp.base, err)
		}
		sp.narHash = "sha256:" + nixbase32.EncodeToString(h.Sum(nil))
		sp.narSize = cw.n
		return nil
	})
}
