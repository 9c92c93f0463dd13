package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "corpus:", err)
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError string

func (u usageError) Error() string { return string(u) }

type options struct {
	out     string
	seed    uint64
	scale   float64
	inodes  int
	flat    int
	hashes  bool
	force   bool
	dryRun  bool
	workers int
}

func run(args []string, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("corpus", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.out, "out", "", "output directory (required)")
	fs.Uint64Var(&o.seed, "seed", 1, "random seed")
	fs.Float64Var(&o.scale, "scale", 1, "size relative to the 1,200-path, 110k-name, 1.5 GB closure (0.01 to 4)")
	fs.IntVar(&o.inodes, "inodes", 0, "pick the scale that gives about this many names")
	fs.IntVar(&o.flat, "flat", -1, "write one store path holding one directory of this many entries")
	fs.BoolVar(&o.hashes, "hashes", true, "compute narHash/narSize for .attrs.json and the registration")
	fs.BoolVar(&o.force, "force", false, "replace an existing output directory")
	fs.BoolVar(&o.dryRun, "n", false, "plan only: print the counts, write nothing")
	fs.IntVar(&o.workers, "j", runtime.NumCPU(), "parallel writers")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	if o.out == "" && !o.dryRun {
		return usageError("-out is required")
	}
	if o.inodes > 0 {
		o.scale = float64(o.inodes) / baseEntries
	}
	if o.flat < 0 && (o.scale < 0.01 || o.scale > 4) {
		return usageError(fmt.Sprintf("scale %g is outside 0.01..4", o.scale))
	}
	if o.workers < 1 {
		o.workers = 1
	}

	start := time.Now()
	var c *corpus
	mode := "closure"
	if o.flat >= 0 {
		c, mode = planFlat(o.seed, o.flat), "flat"
	} else {
		c = plan(o.seed, o.scale)
	}
	n := c.count()
	fmt.Fprintf(stderr, "planned %d store paths, %d names (%d dirs, %d files, %d symlinks of which %d long, %d hardlinks), %.2f GB, largest file %.1f MB, biggest directory %d entries\n",
		n.paths, n.entries, n.dirs, n.files, n.symlinks, n.longSymlinks, n.hardlinks, float64(n.bytes)/1e9, float64(n.largest)/1e6, n.biggestDir)
	if o.dryRun {
		return nil
	}

	if err := prepareOut(o.out, o.force); err != nil {
		return err
	}
	root := filepath.Join(o.out, "root")
	if err := writeTree(c, root, o.workers); err != nil {
		return fmt.Errorf("write the tree: %w", err)
	}
	fmt.Fprintf(stderr, "wrote %s in %.1f s\n", root, time.Since(start).Seconds())
	if o.hashes {
		t := time.Now()
		if err := hashPaths(c, root, o.workers); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "hashed %d paths in %.1f s\n", len(c.paths), time.Since(t).Seconds())
	}
	if err := writeGraphs(c, o.out, o.hashes); err != nil {
		return fmt.Errorf("write the graph files: %w", err)
	}
	return writeEnv(c, o.out, n, o.seed, o.scale, mode)
}

// prepareOut makes sure out is empty, removing an old corpus with -force
// (its directories are read-only, so they are made writable first).
func prepareOut(out string, force bool) error {
	entries, err := os.ReadDir(out)
	if errors.Is(err, fs.ErrNotExist) {
		return os.MkdirAll(out, 0o755)
	}
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return nil
	}
	if !force {
		return usageError(fmt.Sprintf("%s is not empty (use -force to replace it)", out))
	}
	err = filepath.WalkDir(out, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(path, 0o755)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("make %s writable: %w", out, err)
	}
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	return os.MkdirAll(out, 0o755)
}

// planFlat plans one store path holding one directory of n entries, named
// and sized like the pages of share/man/man3.
func planFlat(seed uint64, n int) *corpus {
	p := newPlanner(seed, 1)
	sp := &storePath{refs: map[int]bool{}}
	p.c.paths = []*storePath{sp}
	sp.base = p.storeHash(0) + fmt.Sprintf("-flat-dir-%d", n)
	sp.root = newDir(sp.base)
	d := p.subdir(sp.root, "share/man/man3")
	p.flat(d, n, ".3.gz", 600, 0.8, 0.1)
	return p.c
}
