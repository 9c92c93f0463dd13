package build

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mkext4fs/mkext4fs/internal/e2fs"
	"github.com/mkext4fs/mkext4fs/internal/imagetest"
	"github.com/mkext4fs/mkext4fs/internal/nixtest"
	"github.com/mkext4fs/mkext4fs/pkg/debugfsgen"
	"golang.org/x/sys/unix"
)

// hostileNames are names a Linux filesystem allows that a careless
// debugfs script would break on.
var hostileNames = []string{
	"with space", " leading", "trailing ", "tab\there", `dq"uote`, `"`, `""`, `"quoted"`,
	"#hash", "!bang", "-x", "--", "<12>", "<2>", `back\slash`, "ünïcødé ☃", "semi;colon",
	"$(echo pwned)", "`cmd`", "'single'", `x" rm y`, `a"" b`, "*", "?", "\x01ctrl", "\x7f",
	"\xff\xfe not utf-8", "  ", ".hidden", ". dot space", "vt\vff\f", "ends in quote\"",
	strings.Repeat("n", 255), strings.Repeat("é", 127) + "x",
}

func hostileStore(t *testing.T) *imagetest.Store {
	s := imagetest.NewStore(t)
	s.Add(t, "hostile", func(p string) error {
		for _, sub := range []string{"files", "dirs", "links"} {
			if err := os.MkdirAll(filepath.Join(p, sub), 0o755); err != nil {
				return err
			}
		}
		for i, name := range hostileNames {
			if err := os.WriteFile(filepath.Join(p, "files", name), []byte(name), 0o444); err != nil {
				return err
			}
			if err := os.Mkdir(filepath.Join(p, "dirs", name), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(p, "dirs", name, name), []byte("inside"), 0o444); err != nil {
				return err
			}
			if err := os.Symlink(name, filepath.Join(p, "links", fmt.Sprintf("link%02d", i))); err != nil {
				return err
			}
		}
		return nil
	})
	// The same names in a staged directory, where they go through "ln".
	s.Add(t, "hostile-staged", func(p string) error {
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		for i := 0; i < 400; i++ {
			if err := os.WriteFile(filepath.Join(p, fmt.Sprintf("padding-%04d", i)), nil, 0o444); err != nil {
				return err
			}
		}
		for i, name := range hostileNames {
			if err := os.WriteFile(filepath.Join(p, name), []byte(name), 0o444); err != nil {
				return err
			}
			if err := os.Symlink(`target with "quotes" and spaces `+name, filepath.Join(p, fmt.Sprintf("zlink%02d", i))); err != nil {
				return err
			}
		}
		return nil
	})
	s.Finish(t)
	return s
}

func TestHostileNames(t *testing.T) {
	requireTools(t)
	s := hostileStore(t)
	for _, bulk := range []int64{-1, 1} {
		t.Run(fmt.Sprintf("bulk=%d", bulk), func(t *testing.T) {
			img, res := buildImage(t, s, func(o *Options) { o.StageBytes = 4096; o.BulkBlocks = bulk })
			mnt := imagetest.Mount(t, img)
			imagetest.CompareImage(t, mnt, s, imagetest.Want{Time: 1})
			if files := res.Report.Bulk.Files; (bulk < 0) != (files == 0) {
				t.Errorf("%d files copied in bulk with BulkBlocks %d", files, bulk)
			}
		})
	}
}

// TestNamesDebugfsCannotCarry: a newline or carriage return in a name or
// target fails the build with the store path named, before debugfs runs,
// and leaves nothing. The script is written while the image is sized and
// made: the name is still the error when making the image fails too.
func TestNamesDebugfsCannotCarry(t *testing.T) {
	requireTools(t)
	newline := func(d string) error { return os.WriteFile(filepath.Join(d, "new\nline"), nil, 0o444) }
	for _, tc := range []struct {
		name   string
		make   func(dir string) error
		change func(t *testing.T, o *Options)
	}{
		{"newline in a name", newline, nil},
		{"carriage return in a name", func(d string) error { return os.WriteFile(filepath.Join(d, "cr\rhere"), nil, 0o444) }, nil},
		{"newline in a target", func(d string) error { return os.Symlink("a\nb", filepath.Join(d, "link")) }, nil},
		{"newline in a name, mke2fs killed", newline, func(t *testing.T, o *Options) {
			o.Tools.Mke2fs = versionOr(t, "1.47.0", "kill -9 $$\n")
		}},
		{"newline in a name, debugfs killed", newline, func(t *testing.T, o *Options) {
			o.Tools.Debugfs = fakeTool(t, "debugfs", "kill -9 $$\n")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := imagetest.NewStore(t)
			sp := s.Add(t, "bad", func(p string) error {
				if err := os.Mkdir(p, 0o755); err != nil {
					return err
				}
				return tc.make(p)
			})
			s.Finish(t)
			out := filepath.Join(t.TempDir(), "img")
			o := defaults(s, out)
			if tc.change != nil {
				tc.change(t, &o)
			}
			_, err := Build(context.Background(), o)
			if err == nil {
				t.Fatal("build succeeded")
			}
			if !strings.Contains(err.Error(), sp) || !strings.Contains(err.Error(), "cannot be passed to debugfs") {
				t.Errorf("error does not name the store path and the cause: %v", err)
			}
			assertNothingLeft(t, out)
		})
	}
}

// TestInjection feeds debugfs a script made for names that try to become
// a second command: the image must hold exactly the names, and nothing
// else may have happened.
func TestInjection(t *testing.T) {
	requireTools(t)
	s := imagetest.NewStore(t)
	s.Add(t, "inject", func(p string) error {
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		for _, name := range []string{`x" rm y`, `victim`, `a" "b`, "\" ; mkdir pwned ; \"", "\tmkdir pwned", "mkdir pwned"} {
			if err := os.WriteFile(filepath.Join(p, name), []byte("x"), 0o444); err != nil {
				return err
			}
		}
		return os.Symlink(`t" rm victim "`, filepath.Join(p, "link"))
	})
	s.Finish(t)
	img, _ := buildImage(t, s, nil)
	mnt := imagetest.Mount(t, img)
	imagetest.CompareImage(t, mnt, s, imagetest.Want{Time: 1})
	for _, dir := range []string{mnt, filepath.Join(mnt, "nix", "store")} {
		if _, err := os.Lstat(filepath.Join(dir, "pwned")); err == nil {
			t.Errorf("a name ran a command: %s/pwned exists", dir)
		}
	}
}

// TestScriptLinesAreExact runs a generated script's lines through the
// model of debugfs' splitter: every line has the arguments intended.
func TestScriptLinesAreExact(t *testing.T) {
	s := hostileStore(t)
	o := defaults(s, filepath.Join(t.TempDir(), "img"))
	o.StageBytes = 4096
	prep, err := Prepare(context.Background(), &o)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, phase := range prep.Script.Phases {
		for _, line := range phase {
			args, err := debugfsgen.Split(line)
			if err != nil || len(args) == 0 {
				t.Fatalf("line %q: %v", line, err)
			}
			for _, a := range args[1:] {
				seen[filepath.Base(a)] = true
			}
		}
	}
	for _, name := range hostileNames {
		if !seen[name] {
			t.Errorf("no command has %q as an argument", name)
		}
	}
}

type sizeCase struct {
	name string
	fill func(p string) error
}

func manyFiles(n int, size int, perDir int) func(p string) error {
	return func(p string) error {
		content := make([]byte, size)
		for i := range content {
			content[i] = 'x'
		}
		for i := 0; i < n; i++ {
			dir := p
			if perDir > 0 {
				dir = filepath.Join(p, fmt.Sprintf("d%03d", i/perDir))
			}
			if i == 0 || (perDir > 0 && i%perDir == 0) {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return err
				}
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file-%06d", i)), content, 0o444); err != nil {
				return err
			}
		}
		return nil
	}
}

// TestSizes: the image never runs out of space, and keeps the headroom
// asked for and not much more.
func TestSizes(t *testing.T) {
	requireTools(t)
	if testing.Short() {
		t.Skip("large trees")
	}
	cases := []sizeCase{
		{"100k files in one directory", manyFiles(100000, 0, 0)},
		{"70k one-byte files", manyFiles(70000, 1, 1000)},
		{"10k empty directories", func(p string) error {
			for i := 0; i < 10000; i++ {
				if err := os.MkdirAll(filepath.Join(p, fmt.Sprintf("empty-%05d", i)), 0o755); err != nil {
					return err
				}
			}
			return nil
		}},
		{"5k long symlinks", func(p string) error {
			if err := os.Mkdir(p, 0o755); err != nil {
				return err
			}
			for i := 0; i < 5000; i++ {
				target := strings.Repeat(fmt.Sprintf("%05d/", i), 10+i%600)
				if err := os.Symlink(target, filepath.Join(p, fmt.Sprintf("link-%05d", i))); err != nil {
					return err
				}
			}
			return nil
		}},
		{"255-byte names", func(p string) error {
			if err := os.Mkdir(p, 0o755); err != nil {
				return err
			}
			for i := 0; i < 2000; i++ {
				name := fmt.Sprintf("%05d", i) + strings.Repeat("n", 250)
				if err := os.WriteFile(filepath.Join(p, name), []byte(name), 0o444); err != nil {
					return err
				}
			}
			return nil
		}},
		{"1 GiB file", func(p string) error {
			if err := os.Mkdir(p, 0o755); err != nil {
				return err
			}
			f, err := os.Create(filepath.Join(p, "big"))
			if err != nil {
				return err
			}
			defer f.Close()
			block := make([]byte, 1<<20)
			for i := range block {
				block[i] = byte(i*7 + 1)
			}
			for i := 0; i < 1024; i++ {
				if _, err := f.Write(block); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	for _, headroom := range []int64{16 << 20, 0} {
		for _, c := range cases {
			if headroom == 0 && (c.name == "1 GiB file" || c.name == "70k one-byte files") {
				continue // the tight bound matters where directories dominate
			}
			t.Run(fmt.Sprintf("%s, headroom %d MiB", c.name, headroom>>20), func(t *testing.T) {
				s := imagetest.NewStore(t)
				s.Add(t, "case", c.fill)
				s.Finish(t)
				// Without headroom, no free inodes either: the inodes
				// a merge holds for a while must still be there.
				extra := int64(4096)
				if headroom == 0 {
					extra = 0
				}
				img, res := buildImage(t, s, func(o *Options) { o.Headroom, o.ExtraInodes = headroom, extra })
				sb, err := e2fs.ReadSuperblock(img)
				if err != nil {
					t.Fatal(err)
				}
				free := sb.UnreservedFree() * 4096
				size := int64(sb.BlocksCount) * 4096
				limit := headroom + size/100 + 1<<20
				t.Logf("image %d MiB, free %d KiB (headroom %d KiB, limit %d KiB), free inodes %d, seconds %v",
					size>>20, free>>10, headroom>>10, limit>>10, sb.FreeInodes, res.Report.Seconds)
				if free < headroom || free > limit {
					t.Errorf("unreserved free space %d bytes, want %d..%d", free, headroom, limit)
				}
				// mke2fs fills each group's last inode-table block (16
				// inodes); the inodes a merge held are within the
				// extra ones, not on top of them.
				groups := (sb.BlocksCount + uint64(sb.BlocksPerGroup) - 1) / uint64(sb.BlocksPerGroup)
				if extra > 0 && int64(sb.FreeInodes) > extra+16*int64(groups) {
					t.Errorf("%d free inodes, want at most %d (%d groups)", sb.FreeInodes, extra+16*int64(groups), groups)
				}
				mnt := imagetest.Mount(t, img)
				imagetest.CompareImage(t, mnt, s, imagetest.Want{Time: 1, Sample: 97})
				imagetest.CheckHtrees(t, img, mnt)
			})
		}
	}
}

// TestSmallFilesCountedWhileHashing: the blocks of the small files, which
// the walk leaves unread for the hashing to count, are those debugfs
// stores: with many of them holding blocks of zeros, the build plans the
// content a plan that reads them has, checks it, and keeps no more free
// space than asked for.
func TestSmallFilesCountedWhileHashing(t *testing.T) {
	requireTools(t)
	s := imagetest.NewStore(t)
	s.Add(t, "small-sparse", func(p string) error {
		if err := os.MkdirAll(filepath.Join(p, "sub"), 0o755); err != nil {
			return err
		}
		for i := 0; i < 2000; i++ {
			// 1 to 4 blocks; a block of data where the bits of i say.
			n := 1 + i%4
			content := make([]byte, n*4096-i%97)
			for b := 0; b < n; b++ {
				if i>>b&1 == 1 {
					content[b*4096+i%50] = byte(i)
				}
			}
			if err := os.WriteFile(filepath.Join(p, fmt.Sprintf("f%04d", i)), content, 0o444); err != nil {
				return err
			}
		}
		return os.Link(filepath.Join(p, "f0006"), filepath.Join(p, "sub", "link"))
	})
	s.Finish(t)
	img, res := buildImage(t, s, func(o *Options) { o.Headroom = 0 })
	// Files of one block or more go in bulk, read by the walk.
	_, read := buildImage(t, s, func(o *Options) { o.Headroom, o.BulkBlocks = 0, 1 })
	if got, want := res.Report.Blocks.Planned, read.Report.Blocks.Planned; got != want || fmt.Sprint(res.Report.StorePaths) != fmt.Sprint(read.Report.StorePaths) {
		t.Errorf("planned %d blocks of content, %+v; a walk that reads the files plans %d, %+v", got, res.Report.StorePaths, want, read.Report.StorePaths)
	}
	sb, err := e2fs.ReadSuperblock(img)
	if err != nil {
		t.Fatal(err)
	}
	if free, limit := sb.UnreservedFree()*4096, int64(sb.BlocksCount)*4096/100+1<<20; free > limit {
		t.Errorf("%d bytes free, want at most %d", free, limit)
	}
	mnt := imagetest.Mount(t, img)
	imagetest.CompareImage(t, mnt, s, imagetest.Want{Time: 1})
}

func fileDigest(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// TestReproducible: the same closure gives the same bytes whatever else
// differs between two builds.
func TestReproducible(t *testing.T) {
	requireTools(t)
	base := mixedStore(t)
	img, _ := buildImage(t, base, nil)
	want := fileDigest(t, img)

	variations := map[string]func(t *testing.T, s *imagetest.Store, o *Options){
		"source times": func(t *testing.T, s *imagetest.Store, o *Options) {
			when := time.Date(2021, 5, 6, 7, 8, 9, 123, time.UTC)
			walkAll(t, s.Root, func(p string) error {
				ts := []unix.Timespec{unix.NsecToTimespec(when.UnixNano()), unix.NsecToTimespec(when.UnixNano() + 77)}
				return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
			})
		},
		"source owners": func(t *testing.T, s *imagetest.Store, o *Options) {
			walkAll(t, s.Root, func(p string) error { return os.Lchown(p, 1234, 5678) })
		},
		"optimised (hard-linked) source": func(t *testing.T, s *imagetest.Store, o *Options) {
			// What nix-store --optimise does: identical files become one
			// inode.
			dups := s.Host(s.Paths[len(s.Paths)-1])
			a := filepath.Join(dups, "one", "dup")
			for _, b := range []string{filepath.Join(dups, "two", "dup"), filepath.Join(s.Host(s.Paths[0]), "share", "doc", "README")} {
				parent := filepath.Dir(b)
				if err := os.Chmod(parent, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Remove(b); err != nil {
					t.Fatal(err)
				}
				if err := os.Link(a, b); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(parent, 0o555); err != nil {
					t.Fatal(err)
				}
			}
		},
		"time zone and locale": func(t *testing.T, s *imagetest.Store, o *Options) {
			t.Setenv("TZ", "Asia/Tokyo")
			t.Setenv("LC_ALL", "ja_JP.UTF-8")
			t.Setenv("LANG", "ja_JP.UTF-8")
		},
		"host clock and tool configuration": func(t *testing.T, s *imagetest.Store, o *Options) {
			t.Setenv("FAKETIME", "@2033-01-01 00:00:00")
			t.Setenv("E2FSPROGS_FAKE_TIME", "2000000000")
			t.Setenv("SOURCE_DATE_EPOCH", "315532800")
			bad := filepath.Join(t.TempDir(), "mke2fs.conf")
			if err := os.WriteFile(bad, []byte("[defaults]\n\tbase_features = sparse_super\n\tinode_size = 128\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Setenv("MKE2FS_CONFIG", bad)
			t.Setenv("E2FSCK_CONFIG", bad)
		},
		"temporary and working directory": func(t *testing.T, s *imagetest.Store, o *Options) {
			deep := filepath.Join(t.TempDir(), "a b", "c")
			if err := os.MkdirAll(deep, 0o755); err != nil {
				t.Fatal(err)
			}
			o.Output = filepath.Join(deep, "image")
			t.Setenv("TMPDIR", t.TempDir())
			wd, err := os.Getwd()
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chdir(t.TempDir()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chdir(wd) })
		},
		"one CPU": func(t *testing.T, s *imagetest.Store, o *Options) {
			prev := runtime.GOMAXPROCS(1)
			t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
		},
		"umask": func(t *testing.T, s *imagetest.Store, o *Options) {
			prev := unix.Umask(0o077)
			t.Cleanup(func() { unix.Umask(prev) })
		},
	}
	for name, vary := range variations {
		t.Run(name, func(t *testing.T) {
			s := mixedStore(t)
			out := filepath.Join(t.TempDir(), "img")
			o := defaults(s, out)
			vary(t, s, &o)
			if _, err := Build(context.Background(), o); err != nil {
				t.Fatal(err)
			}
			if got := fileDigest(t, o.Output); got != want {
				t.Errorf("image differs: sha256 %s, want %s", got, want)
			}
		})
	}
	// The check can fail: another timestamp gives other bytes.
	s := mixedStore(t)
	other, _ := buildImage(t, s, func(o *Options) { o.Timestamp = 2 })
	if fileDigest(t, other) == want {
		t.Error("a different --timestamp gave the same image")
	}
}

func walkAll(t *testing.T, root string, fn func(p string) error) {
	t.Helper()
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return fn(p)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDotDotNames: names starting with ".." are valid store content. From
// the text graph (hashed here) and from structured attrs (the hash Nix
// computed, checked here) the image holds them and a registration Nix
// accepts.
func TestDotDotNames(t *testing.T) {
	requireTools(t)
	n := nixtest.New(t)
	s := imagetest.NewStore(t)
	sp := s.Add(t, "dotdot", func(p string) error {
		return writeFiles(p, map[string]string{"...": "three dots\n", "..x/y": "below\n", "plain": "x\n"})
	})
	s.Finish(t)

	hash, size := n.DumpHash(t, s.Host(sp))
	graph := filepath.Join(t.TempDir(), ".attrs.json")
	js := fmt.Sprintf(`{"closure":[{"path":%q,"narHash":%q,"narSize":%d,"references":[%q]}]}`, sp, hash, size, sp)
	if err := os.WriteFile(graph, []byte(js), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, graphs := range [][]string{nil, {graph}} {
		img, _ := buildImage(t, s, func(o *Options) {
			if graphs != nil {
				o.Graphs = graphs
			}
		})
		mnt := imagetest.Mount(t, img)
		imagetest.CompareImage(t, mnt, s, imagetest.Want{Time: 1})
		reg, err := os.ReadFile(filepath.Join(mnt, "nix-path-registration"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(reg), hash) {
			t.Errorf("graphs %v: the registration lacks Nix's hash %s:\n%s", graphs, hash, reg)
		}
		if err := n.CheckRegistration(t, reg, mnt, s.Paths); err != nil {
			t.Fatalf("nix-store rejects the registration: %v", err)
		}
	}
}
