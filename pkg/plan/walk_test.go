package plan

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/mkext4fs/mkext4fs/internal/dirent"
)

const testStorePath = "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-test"

// walkStore makes root/nix/store/<test> with fill and walks it.
func walkStore(t *testing.T, fill func(p string) error, opts Options) (*Tree, string) {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "nix", "store"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, testStorePath)
	if err := fill(p); err != nil {
		t.Fatal(err)
	}
	opts.Root, opts.StorePaths = root, []string{testStorePath}
	tree, err := Walk(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return tree, p
}

func writeTree(p string) error {
	for _, d := range []string{"bin", "lib/sub", "empty"} {
		if err := os.MkdirAll(filepath.Join(p, d), 0o755); err != nil {
			return err
		}
	}
	for name, content := range map[string]string{"bin/tool": "#!/bin/sh\n", "lib/big": strings.Repeat("x", 100000), "lib/sub/f": "f", "zero": ""} {
		if err := os.WriteFile(filepath.Join(p, name), []byte(content), 0o444); err != nil {
			return err
		}
	}
	return os.Symlink("../lib/big", filepath.Join(p, "bin", "link"))
}

// TestCheckUnchanged: every kind of change to the store after Walk is
// reported with the host path of what changed; no change, no error.
func TestCheckUnchanged(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(p string) error
		path   string // what the error must name
	}{
		{"nothing", func(p string) error { return nil }, ""},
		{"hard link added elsewhere", func(p string) error {
			return os.Link(filepath.Join(p, "lib", "big"), filepath.Join(filepath.Dir(p), "elsewhere"))
		}, ""},
		{"file grown", func(p string) error {
			f, err := os.OpenFile(filepath.Join(p, "lib", "big"), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write([]byte("more"))
			return err
		}, "lib/big"},
		{"file truncated", func(p string) error { return os.Truncate(filepath.Join(p, "lib", "big"), 10) }, "lib/big"},
		{"same size, new content, times put back", func(p string) error {
			f := filepath.Join(p, "lib", "sub", "f")
			st, err := os.Stat(f)
			if err != nil {
				return err
			}
			time.Sleep(10 * time.Millisecond)
			if err := os.WriteFile(f, []byte("g"), 0o444); err != nil {
				return err
			}
			return os.Chtimes(f, st.ModTime(), st.ModTime()) // ctime still moves
		}, "lib/sub/f"},
		{"empty file written", func(p string) error { return os.WriteFile(filepath.Join(p, "zero"), []byte("z"), 0o444) }, "zero"},
		{"file vanished", func(p string) error { return os.Remove(filepath.Join(p, "lib", "sub", "f")) }, "lib/sub/f vanished"},
		{"file replaced by rename", func(p string) error {
			tmp := filepath.Join(p, "bin", "tmp")
			if err := os.WriteFile(tmp, []byte("#!/bin/sh\n"), 0o444); err != nil {
				return err
			}
			return os.Rename(tmp, filepath.Join(p, "bin", "tool"))
		}, "bin/tool changed"},
		{"file replaced by a symlink", func(p string) error {
			f := filepath.Join(p, "lib", "sub", "f")
			if err := os.Remove(f); err != nil {
				return err
			}
			return os.Symlink("/etc/shadow", f)
		}, "lib/sub/f changed"},
		{"mode changed", func(p string) error { return os.Chmod(filepath.Join(p, "bin", "tool"), 0o555) }, "bin/tool"},
		{"symlink retargeted", func(p string) error {
			l := filepath.Join(p, "bin", "link")
			if err := os.Remove(l); err != nil {
				return err
			}
			return os.Symlink("/etc/passwd", l)
		}, "bin"},
		{"entry added to a directory", func(p string) error {
			return os.WriteFile(filepath.Join(p, "empty", "new"), nil, 0o444)
		}, "empty"},
		{"store path vanished", func(p string) error { return os.RemoveAll(p) }, testStorePath},
	} {
		for _, streamed := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/streamed=%v", tc.name, streamed), func(t *testing.T) {
				tree, p := walkStore(t, writeTree, Options{})
				if streamed {
					// The same store, released to a spill.
					tree = streamAll(t, Options{Root: strings.TrimSuffix(p, testStorePath), StorePaths: []string{testStorePath}})
					if len(tree.Store.Children()[0].Children()) != 0 {
						t.Fatal("a released store path keeps its entries in memory")
					}
				}
				if err := tree.CheckUnchanged(); err != nil {
					t.Fatalf("before any change: %v", err)
				}
				if err := tc.change(p); err != nil {
					t.Fatal(err)
				}
				err := tree.CheckUnchanged()
				if tc.path == "" {
					if err != nil {
						t.Fatalf("reported a change: %v", err)
					}
					return
				}
				if err == nil {
					t.Fatal("change not detected")
				}
				if !strings.Contains(err.Error(), tc.path) || !strings.Contains(err.Error(), testStorePath) {
					t.Errorf("error does not name %s and the store path: %v", tc.path, err)
				}
				if !strings.Contains(err.Error(), "during the build") {
					t.Errorf("error does not say what happened: %v", err)
				}
				if strings.Count(err.Error(), testStorePath) != 2 {
					t.Errorf("error names the store path %d times, want 2 (its own name and the host path): %v", strings.Count(err.Error(), testStorePath), err)
				}
			})
		}
	}
}

// TestWalkNeverFollows: symlinks anywhere, the store path itself
// included, stay symlinks with their targets; nothing they point to is
// read.
func TestWalkNeverFollows(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	tree, _ := walkStore(t, func(p string) error {
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		for name, target := range map[string]string{"abs": filepath.Join(outside, "secret"), "dir": outside, "up": "../../..", "shadow": "/etc/shadow"} {
			if err := os.Symlink(target, filepath.Join(p, name)); err != nil {
				return err
			}
		}
		return nil
	}, Options{Optimise: true})
	n := tree.Store.Children()[0]
	if len(n.Children()) != 4 {
		t.Fatalf("%d entries, want 4", len(n.Children()))
	}
	for _, c := range n.Children() {
		if c.Kind != Symlink || c.Blocks != 0 || len(c.Children()) != 0 {
			t.Errorf("%s: a %s with %d blocks and %d children: followed", c.Name, c.Kind, c.Blocks, len(c.Children()))
		}
	}

	// A store path that is itself a symlink to a directory.
	tree, _ = walkStore(t, func(p string) error { return os.Symlink(outside, p) }, Options{})
	if n := tree.Store.Children()[0]; n.Kind != Symlink || n.Target() != outside {
		t.Errorf("store path symlink planned as a %s with target %q", n.Kind, n.Target())
	}
}

// TestWalkRejects: store paths that would reach outside the store
// directory, and file types a store cannot hold.
func TestWalkRejects(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "nix", "store", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(root, "nix", "store", "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, want string
	}{
		{"/nix/store/..", "not directly under /nix/store"},
		{"/nix/store/../etc", "not directly under /nix/store"},
		{"/nix/store/x/../../etc", "not directly under /nix/store"},
		{"/nix/store/.", "not directly under /nix/store"},
		{"/nix/store/", "not directly under /nix/store"},
		{"/nix/storex", "not directly under /nix/store"},
		{"/etc", "not directly under /nix/store"},
		{"/nix/store/fifo", "unsupported file type"},
		{"/nix/store/missing", "no such file or directory"},
	} {
		_, err := Walk(context.Background(), Options{Root: root, StorePaths: []string{tc.path}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.path, err, tc.want)
		}
	}
}

// TestWalkThroughDescriptors checks the walk that reads directories through
// descriptors against plain path calls: a directory whose listing takes many
// reads, a symlink target longer than the first guess, a small file, read
// during the walk, with a block of zeros in it, and one below directories
// nested deeper than the walk keeps descriptors for.
func TestWalkThroughDescriptors(t *testing.T) {
	const names = 3000
	long := strings.Repeat("t", 3000)
	small := append(append([]byte(strings.Repeat("a", BlockSize)), make([]byte, BlockSize)...), "end"...)
	tree, p := walkStore(t, func(p string) error {
		dir := filepath.Join(p, "many")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for i := 0; i < names; i++ {
			name := fmt.Sprintf("%04d-%s", i, strings.Repeat("n", 200))
			if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
				return err
			}
		}
		if err := os.Symlink(long, filepath.Join(p, "link")); err != nil {
			return err
		}
		deep := filepath.Join(p, strings.Repeat("d/", dirent.MaxOpenDepth+8))
		if err := os.MkdirAll(deep, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(deep, "small"), small, 0o644); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(p, "small"), small, 0o644)
	}, Options{})
	sp := tree.Store.Children()[0]
	many := sp.Child("many")
	want, err := os.ReadDir(filepath.Join(p, "many"))
	if err != nil {
		t.Fatal(err)
	}
	if many == nil || len(many.Children()) != len(want) || len(want) != names {
		t.Fatalf("many: walked %d entries, want %d", len(many.Children()), len(want))
	}
	for i, e := range want {
		if c := many.Children()[i]; c.Name != e.Name() || c.Host() != filepath.Join(p, "many", e.Name()) || c.Kind != File {
			t.Fatalf("entry %d: walked %q (%s, host %s), want %q", i, c.Name, c.Kind, c.Host(), e.Name())
		}
	}
	if l := sp.Child("link"); l.Target() != long {
		t.Errorf("link: walked a target of %d bytes, want %d", len(l.Target()), len(long))
	}
	deep := sp
	for deep.Child("d") != nil {
		deep = deep.Child("d")
	}
	for _, dir := range []*Node{sp, deep} {
		s := dir.Child("small")
		if s == nil {
			t.Fatalf("%s: no small file", dir.Host())
		}
		if s.Host() != filepath.Join(dir.Host(), "small") || s.Blocks != 2 || s.Runs != 2 {
			t.Errorf("%s: walked %d blocks in %d runs, want 2 in 2", s.Host(), s.Blocks, s.Runs)
		}
	}
	if deep.Host() != filepath.Join(p, strings.Repeat("d/", dirent.MaxOpenDepth+8)) {
		t.Errorf("deepest directory walked: %s", deep.Host())
	}
}

// TestWalkLargeDirectory: the entries of a directory large enough to be
// looked at by several goroutines give the same tree as one at a time,
// and a bad entry the same error: the first in name order.
func TestWalkLargeDirectory(t *testing.T) {
	const names = 1500
	fill := func(p string) error {
		dir := filepath.Join(p, "big")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for i := 0; i < names; i++ {
			name := filepath.Join(dir, fmt.Sprintf("e%04d", i))
			var err error
			switch i % 7 {
			case 0:
				err = os.WriteFile(name, []byte(fmt.Sprint(i)), 0o444)
			case 1:
				err = os.WriteFile(name, nil, 0o555)
			case 2: // a block of zeros between two of data
				b := append(append([]byte(strings.Repeat("a", BlockSize)), make([]byte, BlockSize)...), byte(i))
				err = os.WriteFile(name, b, 0o444)
			case 3: // read by scan, not during the walk
				err = os.WriteFile(name, []byte(strings.Repeat(fmt.Sprint(i), readWhole)), 0o444)
			case 4:
				err = os.Symlink(fmt.Sprintf("../target-%d", i), name)
			case 5:
				err = os.Symlink(strings.Repeat("long/", 30)+fmt.Sprint(i), name)
			case 6:
				if err = os.Mkdir(name, 0o755); err == nil {
					err = os.WriteFile(filepath.Join(name, "f"), []byte(fmt.Sprint(i)), 0o444)
				}
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	dump := func(tree *Tree) string {
		var b strings.Builder
		tree.Walk(func(n *Node) bool {
			fmt.Fprintf(&b, "%s %s %o %d %d %d %d %q %v %s %+v %v\n", n.Path(), n.Kind, n.Perm, n.Size, n.Blocks, n.Runs,
				n.Links, n.Target(), n.Data(), n.Host(), n.id, n.Bulk)
			return true
		})
		return b.String()
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "nix", "store"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := fill(filepath.Join(root, testStorePath)); err != nil {
		t.Fatal(err)
	}
	walk := func(workers, threshold int) (*Tree, error) {
		old := parallelNames
		parallelNames = threshold
		defer func() { parallelNames = old }()
		return Walk(context.Background(), Options{Root: root, StorePaths: []string{testStorePath}, Workers: workers, BulkBlocks: 2})
	}
	one, err := walk(1, names+1)
	if err != nil {
		t.Fatal(err)
	}
	want := dump(one)
	if got := len(one.Store.Children()[0].Child("big").Children()); got != names {
		t.Fatalf("walked %d entries of big, want %d", got, names)
	}
	for _, workers := range []int{1, 4} {
		tree, err := walk(workers, names)
		if err != nil {
			t.Fatal(err)
		}
		if got := dump(tree); got != want {
			t.Errorf("%d workers: the tree differs from one walked an entry at a time", workers)
		}
	}

	// Two entries the walk rejects: both ways report the first.
	big := filepath.Join(root, testStorePath, "big")
	for _, name := range []string{"e0900", "e0200"} {
		if err := os.Remove(filepath.Join(big, name)); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mkfifo(filepath.Join(big, name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, want1 := walk(1, names+1)
	_, got := walk(4, names)
	if want1 == nil || got == nil || got.Error() != want1.Error() || !strings.Contains(got.Error(), "e0200: unsupported file type") {
		t.Errorf("one at a time: %v\nseveral: %v\nwant both to name e0200", want1, got)
	}
}

// TestHostPaths: every walked entry reads from its own host path, also a
// file that --files merges into a directory of another origin (the
// image's /nix, made by the tool) or the root, and one whose host
// directory's path ends in a slash; the directories the tool makes read
// from nothing. Every entry names the store path it belongs to, if any.
func TestHostPaths(t *testing.T) {
	files := t.TempDir()
	for name, content := range map[string]string{"top": "t", "nix/under-nix": "n", "etc/deep/conf": "c"} {
		if err := os.MkdirAll(filepath.Join(files, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(files, name), []byte(content), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	for _, filesArg := range []string{files, files + "/"} {
		tree, p := walkStore(t, writeTree, Options{Files: filesArg})
		want := map[string]string{
			"/":                          "",
			"/nix":                       "",
			"/nix/store":                 "",
			testStorePath:                p,
			testStorePath + "/bin/tool":  filepath.Join(p, "bin/tool"),
			testStorePath + "/bin/link":  filepath.Join(p, "bin/link"),
			testStorePath + "/lib/sub/f": filepath.Join(p, "lib/sub/f"),
			"/top":                       filepath.Join(files, "top"),
			"/nix/under-nix":             filepath.Join(files, "nix/under-nix"),
			"/etc/deep/conf":             filepath.Join(files, "etc/deep/conf"),
		}
		seen := 0
		tree.Walk(func(n *Node) bool {
			if w, ok := want[n.Path()]; ok {
				seen++
				if n.Host() != w {
					t.Errorf("--files %s: %s reads from %q, want %q", filesArg, n.Path(), n.Host(), w)
				}
			}
			wantSP := ""
			if n.Path() == testStorePath || strings.HasPrefix(n.Path(), testStorePath+"/") {
				wantSP = testStorePath
			}
			if sp := n.StorePath(); sp != wantSP {
				t.Errorf("--files %s: %s is in store path %q, want %q", filesArg, n.Path(), sp, wantSP)
			}
			if n.Host() != "" {
				if _, err := os.Lstat(n.Host()); err != nil {
					t.Errorf("--files %s: %s: %v", filesArg, n.Path(), err)
				}
			}
			return true
		})
		if seen != len(want) {
			t.Errorf("--files %s: %d of the %d entries looked for are in the tree", filesArg, seen, len(want))
		}
	}
}

// TestCheckUnchangedDeep: CheckUnchanged looks entries up from their
// directory, held open down to dirent.MaxOpenDepth and by path below it:
// a deep tree left alone passes, and a change at any depth is found and
// named.
func TestCheckUnchangedDeep(t *testing.T) {
	depth := dirent.MaxOpenDepth + 4
	fill := func(p string) error {
		dir := p
		for i := 0; i < depth; i++ {
			dir = filepath.Join(dir, "d")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", i)), []byte("x"), 0o444); err != nil {
				return err
			}
			if err := os.Symlink("f", filepath.Join(dir, fmt.Sprintf("l%d", i))); err != nil {
				return err
			}
		}
		return nil
	}
	for _, level := range []int{-1, 0, dirent.MaxOpenDepth - 4, dirent.MaxOpenDepth - 3, depth - 1} {
		tree, p := walkStore(t, fill, Options{})
		if err := tree.CheckUnchanged(); err != nil {
			t.Fatalf("before any change: %v", err)
		}
		if level < 0 {
			continue
		}
		name := filepath.Join(p, strings.Repeat("d/", level+1), fmt.Sprintf("f%d", level))
		if err := os.Chmod(name, 0o555); err != nil {
			t.Fatal(err)
		}
		err := tree.CheckUnchanged()
		if err == nil || !strings.Contains(err.Error(), name+" changed during the build") {
			t.Errorf("file %d levels down changed: %v, want it named", level+1, err)
		}
	}
}

// TestNodeMemory: a closure has a node for every name, so a node stays in
// Go's 128-byte size class, and a plain file or symlink makes nothing
// more: only directories, bulk files and hard links carry a nodeMore.
func TestNodeMemory(t *testing.T) {
	if size := unsafe.Sizeof(Node{}); size > 128 {
		t.Errorf("a node takes %d bytes, more than 128", size)
	}
	fill := func(p string) error {
		if err := writeTree(p); err != nil {
			return err
		}
		for _, name := range []string{"lib/same1", "lib/same2"} {
			if err := os.WriteFile(filepath.Join(p, name), []byte("same"), 0o444); err != nil {
				return err
			}
		}
		return nil
	}
	for _, optimise := range []bool{false, true} {
		tree, _ := walkStore(t, fill, Options{Optimise: optimise, BulkBlocks: 8})
		kept := map[string]bool{}
		tree.Walk(func(n *Node) bool {
			if n.more != nil {
				kept[strings.TrimPrefix(n.Path(), testStorePath)] = true
			}
			return true
		})
		want := map[string]bool{}
		for _, p := range []string{"/", "/nix", "/nix/store", "", "/bin", "/lib", "/lib/sub", "/empty", "/lib/big"} {
			want[strings.TrimPrefix(p, testStorePath)] = true
		}
		if optimise {
			want["/lib/same2"] = true
		}
		for p := range kept {
			if !want[p] {
				t.Errorf("optimise %v: %s keeps a nodeMore", optimise, p)
			}
		}
		for p := range want {
			if !kept[p] {
				t.Errorf("optimise %v: %s has no nodeMore", optimise, p)
			}
		}
		same1, same2 := tree.Store.Children()[0].Child("lib").Child("same1"), tree.Store.Children()[0].Child("lib").Child("same2")
		if optimise && (same2.Primary() != same1 || same1.Links != 2) {
			t.Errorf("same2 links to %v, same1 has %d links", same2.Primary(), same1.Links)
		}
		if big := tree.Store.Children()[0].Child("lib").Child("big"); !big.Bulk || len(big.Data()) != 1 {
			t.Errorf("lib/big: bulk %v with runs %v", big.Bulk, big.Data())
		}
	}
}

// streamAll streams opts as a build does, taking and releasing every
// store path in order, and returns the tree.
func streamAll(t *testing.T, opts Options) *Tree {
	t.Helper()
	spill, err := os.Create(filepath.Join(t.TempDir(), "spill"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { spill.Close() })
	tree, err := Stream(context.Background(), opts, spill)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tree.Close)
	for _, c := range tree.Store.Children() {
		n, err := tree.Await(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := tree.Release(n); err != nil {
			t.Fatal(err)
		}
	}
	return tree
}
