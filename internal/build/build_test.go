package build

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkext4fs/mkext4fs/internal/imagetest"
	"github.com/mkext4fs/mkext4fs/internal/nixtest"
	"github.com/mkext4fs/mkext4fs/internal/nosync"
	"github.com/mkext4fs/mkext4fs/internal/testutil"
	"github.com/mkext4fs/mkext4fs/pkg/closure"
)

// requireTools skips (locally) or fails (in CI) without e2fsprogs and
// libfaketime.
func requireTools(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"mke2fs", "debugfs", "e2fsck", "tune2fs", "faketime"} {
		testutil.RequireTool(t, tool)
	}
}

// defaults are the options of a build with the command's defaults.
func defaults(s *imagetest.Store, output string) Options {
	return Options{
		Output:           output,
		Graphs:           []string{s.Graph},
		Root:             s.Root,
		RegistrationPath: "/nix-path-registration",
		Timestamp:        1,
		Headroom:         16 << 20,
		ExtraInodes:      4096,
		ReservedPercent:  5,
		Label:            "NIXOS_SD",
		UUID:             "44444444-4444-4444-8888-888888888888",
		Features:         Profiles["default"],
	}
}

// buildImage builds s into a temporary image with the defaults changed by
// change, and returns the image's path.
func buildImage(t *testing.T, s *imagetest.Store, change func(*Options)) (string, *Result) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "ext4-fs.img")
	o := defaults(s, out)
	var log bytes.Buffer
	o.Log = &log
	if change != nil {
		change(&o)
	}
	res, err := Build(context.Background(), o)
	if err != nil {
		t.Fatalf("build: %v\nlog:\n%s", err, log.String())
	}
	return out, res
}

// mixedStore has what a store holds: nested directories, executables,
// empty files, short and long symlinks, a sparse file and one with zero
// blocks between data, and a directory large enough to be staged.
func mixedStore(t *testing.T) *imagetest.Store {
	s := imagetest.NewStore(t)
	s.Add(t, "base", func(p string) error {
		return writeFiles(p, map[string]string{
			"bin/tool":           "#!/bin/sh\necho tool\n",
			"lib/libbase.so.1":   strings.Repeat("ELF", 5000),
			"lib/libbig.so.1":    strings.Repeat("0123456789abcdef", 20000) + "tail",
			"share/doc/README":   "read me\n",
			"share/empty":        "",
			"etc/with space.txt": "a file name with a space\n",
		})
	})
	s.Add(t, "links", func(p string) error {
		if err := os.MkdirAll(filepath.Join(p, "bin"), 0o755); err != nil {
			return err
		}
		if err := os.Symlink("../lib/x", filepath.Join(p, "bin", "short")); err != nil {
			return err
		}
		return os.Symlink("/nix/store/"+strings.Repeat("y", 100)+"/long/target", filepath.Join(p, "bin", "long"))
	})
	s.Add(t, "single-file", func(p string) error { return os.WriteFile(p, []byte("just a file\n"), 0o444) })
	s.Add(t, "single-link", func(p string) error { return os.Symlink("single-file", p) })
	s.Add(t, "empty-dir", func(p string) error { return os.Mkdir(p, 0o755) })
	s.Add(t, "sparse", func(p string) error {
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		f, err := os.Create(filepath.Join(p, "holes"))
		if err != nil {
			return err
		}
		defer f.Close()
		for _, off := range []int64{0, 3 << 20, 40 << 20} {
			if _, err := f.WriteAt(bytes.Repeat([]byte{0xa5}, 10000), off); err != nil {
				return err
			}
		}
		// Zero blocks written out, between data: debugfs skips them too.
		zeros := append(append([]byte("start"), make([]byte, 5*4096)...), []byte("end")...)
		return os.WriteFile(filepath.Join(p, "zeros"), zeros, 0o644)
	})
	s.Add(t, "man", func(p string) error {
		dir := filepath.Join(p, "share", "man", "man3")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for i := 0; i < 3000; i++ {
			name := fmt.Sprintf("function_%05d.3.gz", i)
			if i%100 == 0 {
				if err := os.Symlink(fmt.Sprintf("function_%05d.3.gz", i+1), filepath.Join(dir, "alias_"+name)); err != nil {
					return err
				}
			}
			if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o444); err != nil {
				return err
			}
		}
		return os.Mkdir(filepath.Join(dir, "subdir"), 0o755)
	})
	// Directories whose one block is full to the last 8 bytes: tune2fs
	// finds no room for the checksum tail and asks for e2fsck -fD.
	s.Add(t, "fullblocks", func(p string) error {
		for n := 250; n <= 256; n++ {
			dir := filepath.Join(p, fmt.Sprintf("d%d", n))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			for i := 0; i < n; i++ {
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), nil, 0o444); err != nil {
					return err
				}
			}
		}
		return nil
	})
	// Identical files, as nix-store --optimise would hard-link them (the
	// last path: a test relies on it).
	s.Add(t, "dups", func(p string) error {
		return writeFiles(p, map[string]string{"one/dup": "read me\n", "two/dup": "read me\n"})
	})
	s.Finish(t)
	return s
}

func writeFiles(root string, files map[string]string) error {
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o444)
		if strings.HasPrefix(content, "#!") {
			mode = 0o555
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			return err
		}
	}
	return nil
}

func TestRoundTrip(t *testing.T) {
	requireTools(t)
	s := mixedStore(t)
	// Every file through debugfs' write; every non-empty one copied in
	// bulk; the default split.
	used := map[int64]int64{}
	for _, bulk := range []int64{-1, 1, 0} {
		t.Run(fmt.Sprintf("bulk=%d", bulk), func(t *testing.T) { used[bulk] = testRoundTrip(t, s, bulk) })
	}
	// Files with blocks of zeros go through write, which leaves those
	// out: the images hold the same number of blocks.
	if used[-1] != used[1] || used[-1] != used[0] {
		t.Errorf("blocks used: %d through write, %d all in bulk, %d by default", used[-1], used[1], used[0])
	}
}

func testRoundTrip(t *testing.T, s *imagetest.Store, bulk int64) (used int64) {
	img, res := buildImage(t, s, func(o *Options) { o.StageBytes = 8192; o.BulkBlocks = bulk })
	mnt := imagetest.Mount(t, img)
	imagetest.CompareImage(t, mnt, s, imagetest.Want{Time: 1})
	if n := imagetest.CheckHtrees(t, img, mnt); n == 0 {
		t.Error("no directory of more than one block to read the index of")
	} else {
		t.Logf("read the index of %d directories", n)
	}
	t.Logf("seconds: %v, bulk: %+v", res.Report.Seconds, res.Report.Bulk)
	if res.Report.Inodes.Used == 0 {
		t.Error("report has no inode counts")
	}
	if _, ok := res.Report.Seconds["merge"]; !ok {
		t.Error("no large directory was merged: the store's big directory went another way")
	}
	if files := res.Report.Bulk.Files; (bulk < 0) != (files == 0) {
		t.Errorf("%d files copied in bulk with BulkBlocks %d", files, bulk)
	}

	// The registration is what nix-store --load-db takes, with hashes Nix
	// itself agrees with.
	n := nixtest.New(t)
	reg, err := os.ReadFile(filepath.Join(mnt, "nix-path-registration"))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.CheckRegistration(t, reg, mnt, s.Paths); err != nil {
		t.Fatalf("nix-store rejects the image's registration: %v", err)
	}
	broken := append([]byte(nil), reg...)
	i := bytes.Index(broken, []byte("sha256:")) + len("sha256:") + 3
	if broken[i] == '0' {
		broken[i] = '1'
	} else {
		broken[i] = '0'
	}
	if err := n.CheckRegistration(t, broken, mnt, s.Paths); err == nil {
		t.Fatal("nix-store accepted a registration with a wrong hash: the check cannot fail")
	}
	return res.Report.Blocks.Used
}

func TestRealNixClosure(t *testing.T) {
	requireTools(t)
	n := nixtest.New(t)
	f := nixtest.BuildFixture(t, n)
	c, err := closure.Load([]string{f.JSONGraph}, closure.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := &imagetest.Store{Root: "/", Paths: c.PathNames(), Graph: f.JSONGraph}
	img, _ := buildImage(t, s, func(o *Options) { o.Root = "" })
	mnt := imagetest.Mount(t, img)
	imagetest.CompareImage(t, mnt, s, imagetest.Want{Time: 1})
	reg, err := os.ReadFile(filepath.Join(mnt, "nix-path-registration"))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.CheckRegistration(t, reg, mnt, s.Paths); err != nil {
		t.Fatalf("nix-store rejects the registration: %v", err)
	}
}

func TestOwnerAndOptimise(t *testing.T) {
	requireTools(t)
	s := imagetest.NewStore(t)
	for i := 0; i < 2; i++ {
		s.Add(t, fmt.Sprintf("dup%d", i), func(p string) error {
			return writeFiles(p, map[string]string{"a": "same content\n", "b": "same content\n", "c": "other\n"})
		})
	}
	s.Finish(t)
	img, _ := buildImage(t, s, func(o *Options) { o.UID, o.GID, o.Optimise = 0, 30000, true })
	mnt := imagetest.Mount(t, img)
	imagetest.CompareImage(t, mnt, s, imagetest.Want{GID: 30000, Time: 1, Optimise: true})
	a, err := imagetest.Read(filepath.Join(mnt, s.Paths[0], "a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := imagetest.Read(filepath.Join(mnt, s.Paths[1], "b"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Ino != b.Ino || a.Nlink != 4 {
		t.Errorf("identical files not hard-linked: inodes %d and %d, %d links (want 4)", a.Ino, b.Ino, a.Nlink)
	}
	c, err := imagetest.Read(filepath.Join(mnt, s.Paths[0], "c"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Nlink != 2 || c.Ino == a.Ino {
		t.Errorf("c: inode %d with %d links, want its own inode with 2", c.Ino, c.Nlink)
	}
}

// TestOptimiseStaged: in a staged directory, most files are made in
// chunk directories and merged; a file that others link to is found in
// its chunk, whether two or three names share it.
func TestOptimiseStaged(t *testing.T) {
	requireTools(t)
	s := imagetest.NewStore(t)
	files := map[string]string{}
	for i := 0; i < 600; i++ {
		// Names 0-599 in pairs of equal content, 600-602 a triple.
		files[fmt.Sprintf("many/entry-with-a-long-name-%03d", i)] = fmt.Sprintf("pair %d\n", i/2)
	}
	for i := 600; i < 603; i++ {
		files[fmt.Sprintf("many/entry-with-a-long-name-%03d", i)] = "triple\n"
	}
	s.Add(t, "dups", func(p string) error { return writeFiles(p, files) })
	s.Finish(t)
	img, res := buildImage(t, s, func(o *Options) { o.Optimise = true })
	if _, ok := res.Report.Seconds["merge"]; !ok {
		t.Fatalf("no staged directory was merged: phases %v", res.Report.Seconds)
	}
	mnt := imagetest.Mount(t, img)
	imagetest.CompareImage(t, mnt, s, imagetest.Want{Time: 1, Optimise: true})
	for _, group := range [][]int{{0, 1}, {398, 399}, {598, 599}, {600, 601, 602}} {
		var first *imagetest.Entry
		for k, i := range group {
			e, err := imagetest.Read(filepath.Join(mnt, s.Paths[0], fmt.Sprintf("many/entry-with-a-long-name-%03d", i)))
			if err != nil {
				t.Fatal(err)
			}
			if k == 0 {
				first = e
			}
			if e.Ino != first.Ino || e.Nlink != uint64(len(group)) {
				t.Errorf("entry %d: inode %d with %d links, want inode %d with %d", i, e.Ino, e.Nlink, first.Ino, len(group))
			}
		}
	}
}

// The tools run without their fsyncs, through the trampoline TestMain
// serves; --sync forces the image to the disk at the end. Neither changes a
// byte of the image.
func TestSync(t *testing.T) {
	requireTools(t)
	if !nosync.Enabled() {
		t.Fatal("the tools are not wrapped: the test binary does not serve the trampoline")
	}
	s := mixedStore(t)
	var sums [2][32]byte
	for i, sync := range []bool{false, true} {
		img, res := buildImage(t, s, func(o *Options) { o.Sync = sync })
		if _, ok := res.Report.Seconds["sync"]; ok != sync {
			t.Errorf("Sync %v: the report's phases are %v", sync, res.Report.Seconds)
		}
		data, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		sums[i] = sha256.Sum256(data)
	}
	if sums[0] != sums[1] {
		t.Error("the image built with Sync differs from the one built without")
	}
}

func TestNothingAtOutputOnFailure(t *testing.T) {
	requireTools(t)
	s := mixedStore(t)
	for name, change := range map[string]func(*Options){
		"missing debugfs": func(o *Options) { o.Tools.Debugfs = filepath.Join(t.TempDir(), "no-debugfs") },
		"debugfs fails": func(o *Options) {
			o.Tools.Debugfs = script(t, "#!/bin/sh\necho 'debugfs: oops' >&2\nexit 1\n")
		},
		"debugfs killed": func(o *Options) { o.Tools.Debugfs = script(t, "#!/bin/sh\nkill -9 $$\n") },
		"e2fsck fails":   func(o *Options) { o.Tools.E2fsck = script(t, "#!/bin/sh\necho broken\nexit 4\n") },
		"mke2fs silent": func(o *Options) {
			o.Tools.Mke2fs = script(t, "#!/bin/sh\ncase \"$1\" in -V) echo 'mke2fs 1.47.0 (5-Feb-2023)';; *) exit 1;; esac\n")
		},
		"store path missing": func(o *Options) {
			o.Root = t.TempDir()
		},
		"old e2fsprogs": func(o *Options) {
			o.Tools.Mke2fs = script(t, "#!/bin/sh\necho 'mke2fs 1.42.9 (28-Dec-2013)' >&2\n")
		},
	} {
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "img")
			o := defaults(s, out)
			change(&o)
			_, err := Build(context.Background(), o)
			if err == nil {
				t.Fatal("build succeeded")
			}
			t.Logf("error: %v", err)
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans several lines: %q", err)
			}
			assertNothingLeft(t, out)
		})
	}
}

// script writes an executable shell script and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tool")
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// assertNothingLeft checks that neither the output nor a temporary
// directory beside it exists.
func assertNothingLeft(t *testing.T, out string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Dir(out))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left behind: %s", e.Name())
	}
}

func TestCancelLeavesNothing(t *testing.T) {
	requireTools(t)
	s := mixedStore(t)
	out := filepath.Join(t.TempDir(), "img")
	o := defaults(s, out)
	ctx, cancel := context.WithCancel(context.Background())
	var log lineWatcher
	log.on = func(line string) {
		if strings.HasPrefix(line, "plan:") {
			cancel() // during mkfs and populate
		}
	}
	o.Log = &log
	_, err := Build(ctx, o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("build after cancel: %v, want context.Canceled", err)
	}
	assertNothingLeft(t, out)
}

type lineWatcher struct{ on func(string) }

func (w *lineWatcher) Write(p []byte) (int, error) {
	for _, l := range strings.Split(string(p), "\n") {
		w.on(l)
	}
	return len(p), nil
}

// TestMergeWithoutFiletype: without the filetype feature directory entries
// carry no type, and large directories are still merged.
func TestMergeWithoutFiletype(t *testing.T) {
	requireTools(t)
	s := mixedStore(t)
	img, res := buildImage(t, s, func(o *Options) {
		o.StageBytes = 4096
		o.Features = without(Profiles["default"], "filetype")
	})
	if _, ok := res.Report.Seconds["merge"]; !ok {
		t.Fatal("no directory was merged")
	}
	imagetest.CompareImage(t, imagetest.Mount(t, img), s, imagetest.Want{Time: 1})
}

// TestTrimmedImageChecked: when the image comes out with more free space
// than asked for, resize2fs trims it, and e2fsck -fn checks it once, after
// the trim, as it is handed over. Files of five blocks with two of zeros
// between data count an extent block each in the plan and use none.
func TestTrimmedImageChecked(t *testing.T) {
	requireTools(t)
	s := imagetest.NewStore(t)
	data := strings.Repeat("d", 4096)
	zero := strings.Repeat("\x00", 4096)
	s.Add(t, "runs", func(p string) error {
		files := map[string]string{}
		for i := 0; i < 400; i++ {
			files[fmt.Sprintf("f%03d", i)] = data + zero + fmt.Sprintf("%04d", i) + data[4:] + zero + data
		}
		return writeFiles(p, files)
	})
	s.Finish(t)
	calls := filepath.Join(t.TempDir(), "calls")
	logged := func(name string) string {
		return fakeTool(t, name, "echo \""+name+" $*\" >> "+calls+"\nexec "+realTool(t, name)+" \"$@\"\n")
	}
	img, res := buildImage(t, s, func(o *Options) {
		o.Tools.E2fsck, o.Tools.Resize2fs = logged("e2fsck"), logged("resize2fs")
		o.BulkBlocks = -1 // every file through write
	})
	b, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	var trims, checks []int
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "resize2fs ") && !strings.Contains(l, " -P "):
			trims = append(trims, i)
		case strings.HasPrefix(l, "e2fsck ") && strings.Contains(l, " -n "):
			checks = append(checks, i)
		}
	}
	if len(trims) == 0 {
		t.Fatalf("no trim: the test needs an image with excess free space\n%s", b)
	}
	if len(checks) != 1 || checks[0] != len(lines)-1 {
		t.Errorf("e2fsck -fn ran at %v of the tool runs, want once, last (after the trims at %v):\n%s", checks, trims, b)
	}
	if free, want := res.Report.Blocks.Headroom, int64(16<<20)/4096; free < want || free > want+(res.Report.Blocks.Total/100+256)/4 {
		t.Errorf("%d blocks free beyond the reserve after the trim, want %d to %d", free, want, want+(res.Report.Blocks.Total/100+256)/4)
	}
	imagetest.CompareImage(t, imagetest.Mount(t, img), s, imagetest.Want{Time: 1})
}
