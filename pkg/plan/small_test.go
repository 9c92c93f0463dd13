package plan

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// readSmall does what the NAR hashing does for Settle: it reads every
// file the walk left unread, once for each of its names.
func readSmall(t *testing.T, tree *Tree) *SmallReads {
	t.Helper()
	r := &SmallReads{}
	tree.Walk(func(n *Node) bool {
		if n.Kind == File && n.Estimated {
			var st unix.Stat_t
			if err := unix.Lstat(n.Host(), &st); err != nil {
				t.Fatal(err)
			}
			content, err := os.ReadFile(n.Host())
			if err != nil {
				t.Fatal(err)
			}
			r.Add(&st, content)
		}
		return true
	})
	return r
}

// smallFiles fills a store path with files around the size DeferSmall
// leaves unread, some with blocks of zeros, and a hard link.
func smallFiles(p string) error {
	block := func(b byte) []byte { return bytes.Repeat([]byte{b}, BlockSize) }
	files := map[string][]byte{
		"empty":       nil,
		"one":         []byte("1"),
		"block":       block('b'),
		"block+1":     append(block('b'), 'c'),
		"four":        bytes.Repeat([]byte{'4'}, SmallBlocks*BlockSize),
		"five":        bytes.Repeat([]byte{'5'}, SmallBlocks*BlockSize+1),
		"zero-first":  append(block(0), 'x'),
		"zero-middle": bytes.Join([][]byte{block('a'), block(0), block(0), []byte("z")}, nil),
		"zeros":       make([]byte, 3*BlockSize-7),
		"sparse-five": append(make([]byte, SmallBlocks*BlockSize), 'y'),
		"sub/deep":    append(block(0), block('d')...),
	}
	if err := os.MkdirAll(filepath.Join(p, "sub"), 0o755); err != nil {
		return err
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(p, name), content, 0o444); err != nil {
			return err
		}
	}
	return os.Link(filepath.Join(p, "zero-middle"), filepath.Join(p, "sub", "link"))
}

func walkSmall(t *testing.T, root string, opts Options) *Tree {
	t.Helper()
	opts.Root, opts.StorePaths = root, []string{testStorePath}
	tree, err := Walk(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// TestDeferSmall: the files DeferSmall leaves unread get upper bounds,
// and once Settle has what was read of them, the tree is the one a walk
// that read them makes.
func TestDeferSmall(t *testing.T) {
	_, p := walkStore(t, smallFiles, Options{})
	root := strings.TrimSuffix(p, testStorePath)
	files := filepath.Join(t.TempDir(), "files")
	if err := os.MkdirAll(files, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(files, "etc-file"), make([]byte, 10), 0o644); err != nil {
		t.Fatal(err)
	}
	tree := walkSmall(t, root, Options{DeferSmall: true, Files: files})
	exact := walkSmall(t, root, Options{Files: files})

	if size, ok := tree.SmallSize(); !ok || size != SmallBlocks*BlockSize {
		t.Fatalf("SmallSize %d, %v; want %d, true", size, ok, SmallBlocks*BlockSize)
	}
	if _, ok := exact.SmallSize(); ok {
		t.Fatal("a walk without DeferSmall reports small files left unread")
	}
	estimated := map[string]bool{}
	tree.Walk(func(n *Node) bool {
		if n.Estimated {
			estimated[n.Path()] = true
			if want := (n.Size + BlockSize - 1) / BlockSize; n.Blocks != want || n.Runs > 2 {
				t.Errorf("%s: estimated %d blocks in %d runs, want %d in at most 2", n.Path(), n.Blocks, n.Runs, want)
			}
		}
		return true
	})
	for _, name := range []string{"empty", "one", "block", "block+1", "four", "zero-first", "zero-middle", "zeros", "sub/deep", "sub/link"} {
		if !estimated[testStorePath+"/"+name] {
			t.Errorf("%s was read by the walk", name)
		}
	}
	if len(estimated) != 10 {
		t.Errorf("left unread: %v; want the 10 store files of at most %d blocks", estimated, SmallBlocks)
	}
	g := Geometry{MetadataCsum: true}
	bound, want := tree.Need(g), exact.Need(g)
	if bound.DataBlocks <= want.DataBlocks || bound.Blocks()-bound.DataBlocks != want.Blocks()-want.DataBlocks {
		t.Errorf("before Settle, Need %+v; the exact one is %+v: only the data blocks may be more", bound, want)
	}

	// Short of one name, or with one too many, Settle refuses.
	short := readSmall(t, tree)
	short.seen--
	if err := tree.Settle(short); err == nil || !strings.Contains(err.Error(), "10 small files were left to be read during the build, and 9 were read") {
		t.Errorf("Settle with a name missing: %v", err)
	}
	if err := tree.Settle(readSmall(t, tree)); err != nil {
		t.Fatal(err)
	}
	if got := tree.Need(g); got != want {
		t.Errorf("after Settle, Need %+v; want %+v", got, want)
	}
	got := map[string][2]int64{}
	tree.Walk(func(n *Node) bool {
		if n.Estimated {
			t.Errorf("%s still estimated after Settle", n.Path())
		}
		got[n.Path()] = [2]int64{n.Blocks, n.Runs}
		return true
	})
	exact.Walk(func(n *Node) bool {
		if g := got[n.Path()]; g != [2]int64{n.Blocks, n.Runs} {
			t.Errorf("%s: %d blocks in %d runs after Settle, the walk that reads it plans %d in %d", n.Path(), g[0], g[1], n.Blocks, n.Runs)
		}
		return true
	})
}

// TestDeferSmallReads: files that must be read now are: every file under
// Optimise (for its digest), and those that may go in bulk.
func TestDeferSmallReads(t *testing.T) {
	tree, _ := walkStore(t, smallFiles, Options{DeferSmall: true, Optimise: true})
	if _, ok := tree.SmallSize(); ok {
		t.Error("under Optimise, small files were left unread")
	}
	tree, _ = walkStore(t, smallFiles, Options{DeferSmall: true, BulkBlocks: 2})
	if size, ok := tree.SmallSize(); !ok || size != BlockSize {
		t.Fatalf("with BulkBlocks 2, SmallSize %d, %v; want %d", size, ok, BlockSize)
	}
	tree.Walk(func(n *Node) bool {
		if n.Kind == File && n.Estimated != (n.Size <= BlockSize) {
			t.Errorf("%s (%d bytes): estimated %v", n.Path(), n.Size, n.Estimated)
		}
		return true
	})
	if err := tree.Settle(readSmall(t, tree)); err != nil {
		t.Fatal(err)
	}
}

// TestDataBlocks: the count of a whole content is the scan's.
func TestDataBlocks(t *testing.T) {
	for _, l := range layouts {
		tree, p := walkStore(t, func(p string) error { return layoutFile(p, l) }, Options{})
		content, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		n := tree.Store.Children()[0]
		if blocks, runs := DataBlocks(content); blocks != n.Blocks || runs != n.Runs {
			t.Errorf("layout %v: DataBlocks gives %d blocks in %d runs, the scan %d in %d", l, blocks, runs, n.Blocks, n.Runs)
		}
	}
}
