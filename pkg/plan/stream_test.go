package plan

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

// streamStore makes a store of several store paths under a new root: the
// files of writeTree and smallFiles, a directory large enough to be
// staged, one that needs a padding entry, store paths that are a file and
// a symlink, and many small ones; it returns the root and the options
// that read it.
func streamStore(t *testing.T) (string, Options) {
	t.Helper()
	root := t.TempDir()
	store := filepath.Join(root, "nix", "store")
	var paths []string
	add := func(name string, fill func(p string) error) {
		p := filepath.Join(store, fmt.Sprintf("%032d-%s", len(paths), name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := fill(p); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, strings.TrimPrefix(p, root))
	}
	add("tree", writeTree)
	add("small", smallFiles)
	add("staged", func(p string) error {
		if err := os.MkdirAll(filepath.Join(p, "share", "man3", "sub"), 0o755); err != nil {
			return err
		}
		for i := 0; i < 700; i++ {
			content := []byte(fmt.Sprint(i))
			if i%50 == 0 {
				content = []byte(strings.Repeat("b", 9*BlockSize)) // in bulk
			}
			if err := os.WriteFile(filepath.Join(p, "share", "man3", fmt.Sprintf("entry-with-a-long-name-%04d.3", i)), content, 0o444); err != nil {
				return err
			}
		}
		return os.Symlink(strings.Repeat("t", 80), filepath.Join(p, "share", "man3", "long-link"))
	})
	add("padded", func(p string) error {
		// 202 entries of 20 bytes and one of 24: 4064 bytes.
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
		for i := 0; i < 203; i++ {
			name := fmt.Sprintf("%012d", i)
			if i == 202 {
				name = fmt.Sprintf("%016d", i)
			}
			if err := os.WriteFile(filepath.Join(p, name), nil, 0o444); err != nil {
				return err
			}
		}
		return nil
	})
	add("file", func(p string) error { return os.WriteFile(p, []byte(strings.Repeat("f", 3*BlockSize)), 0o444) })
	add("link", func(p string) error { return os.Symlink("/nix/store/elsewhere", p) })
	for i := 0; i < 40; i++ {
		add(fmt.Sprintf("tiny%d", i), func(p string) error {
			if err := os.MkdirAll(filepath.Join(p, "bin"), 0o755); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(p, "bin", "x"), []byte(p), 0o555)
		})
	}
	files := filepath.Join(root, "files")
	if err := os.MkdirAll(filepath.Join(files, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(files, "etc", "issue"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, Options{Root: root, StorePaths: paths, Files: files, UID: 0, GID: 30000, DeferSmall: true, BulkBlocks: 8, Workers: 2}
}

// dump lists every node under n with what a streamed tree keeps of it.
func dump(n *Node) []string {
	var out []string
	walkFrom(n, func(c *Node) bool {
		out = append(out, fmt.Sprintf("%s %v %o %d/%d %d %d %d %+v %d %v%v%v%v %d %q %q %d", c.Path(), c.Kind, c.Perm, c.UID, c.GID,
			c.Size, c.Blocks, c.Runs, c.id, c.Links, c.Stage, c.Deferred, c.Bulk, c.Estimated, c.flags, c.Host(), c.Target(), len(c.Children())))
		return true
	})
	return out
}

// TestStreamMatchesWalk: a streamed tree whose store paths were all
// released sums up to what a walk of the same store gives, keeps only
// what the script still needs in memory, and reads back every store path
// as it was walked.
func TestStreamMatchesWalk(t *testing.T) {
	_, opts := streamStore(t)
	walked, err := Walk(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	streamed := streamAll(t, opts)

	compare := func(when string) {
		t.Helper()
		for i := 0; i < 8; i++ {
			g := geometryOf(i)
			if got, want := streamed.Need(g), walked.Need(g); got != want {
				t.Errorf("%s: Need(%+v) = %+v, want %+v", when, g, got, want)
			}
			for k, c := range walked.Store.Children() {
				if got, want := streamed.PathNeed(streamed.Store.Children()[k], g), walked.PathNeed(c, g); got != want {
					t.Errorf("%s: PathNeed(%s, %+v) = %+v, want %+v", when, c.Name, g, got, want)
				}
			}
		}
		if got, want := streamed.Stats(), walked.Stats(); got != want {
			t.Errorf("%s: Stats %+v, want %+v", when, got, want)
		}
	}
	compare("walked")
	if !streamed.HasStaged() || !walked.HasStaged() {
		t.Error("no staged directory")
	}
	for _, csum := range []bool{false, true} {
		if got, want := streamed.Pads(csum), walked.Pads(csum); !reflect.DeepEqual(got, want) || (csum && len(want) == 0) {
			t.Errorf("Pads(%v) = %v, want %v (and some with checksums)", csum, got, want)
		}
	}
	if streamed.BigWrite() != nil || walked.BigWrite() != nil {
		t.Error("a file over 2 GiB")
	}

	// Read back, every store path is the one walked (those with nothing
	// to drop stay in memory).
	for k, c := range streamed.Store.Children() {
		back := c
		if sum := streamed.sumOf(c); sum != nil {
			if back, err = streamed.load(c, sum); err != nil {
				t.Fatal(err)
			}
		} else if !keptWhole(c) {
			t.Fatalf("%s was not released", c.Name)
		}
		if got, want := dump(back), dump(walked.Store.Children()[k]); !reflect.DeepEqual(got, want) {
			t.Errorf("%s read back:\n%s\nwant\n%s", c.Name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}

	// In memory: the store paths' tops, the staged directory with its
	// entries and its parents, the bulk files it holds.
	count := func(tree *Tree) (n int) {
		tree.Walk(func(*Node) bool { n++; return true })
		return n
	}
	if kept, all := count(streamed), count(walked); kept > 800 || kept >= all {
		t.Errorf("the released tree keeps %d nodes in memory, the walked one has %d", kept, all)
	}

	// Settled with what was read of the small files, the sums follow.
	reads := []*SmallReads{readSmall(t, walked), readSmall(t, walked)}
	for i, tree := range []*Tree{walked, streamed} {
		if err := tree.Settle(reads[i]); err != nil {
			t.Fatal(err)
		}
	}
	compare("settled")
	if err := streamed.CheckReadable(); err != nil {
		t.Error(err)
	}
}

// TestStreamErrors: a store path that cannot be read fails Await with
// the error the walk gives.
func TestStreamErrors(t *testing.T) {
	root, opts := streamStore(t)
	// A fifo in the second store path: the walk refuses it.
	if err := syscall.Mkfifo(filepath.Join(root, opts.StorePaths[1], "sub", "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	walked, want := Walk(context.Background(), opts)
	if want == nil {
		t.Fatalf("the walk read %v", walked)
	}
	spill, err := os.Create(filepath.Join(t.TempDir(), "spill"))
	if err != nil {
		t.Fatal(err)
	}
	defer spill.Close()
	tree, serr := Stream(context.Background(), opts, spill)
	if serr != nil {
		t.Fatal(serr)
	}
	defer tree.Close()
	var got error
	for _, c := range tree.Store.Children() {
		n, err := tree.Await(c)
		if err != nil {
			got = err
			break
		}
		if err := tree.Release(n); err != nil {
			t.Fatal(err)
		}
	}
	if got == nil || got.Error() != want.Error() {
		t.Errorf("stream: %v\nwant the walk's: %v", got, want)
	}
}
