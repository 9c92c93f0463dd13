package imagecheck_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/mkext4fs/mkext4fs/internal/testutil"
	"github.com/mkext4fs/mkext4fs/pkg/closure"
	"github.com/mkext4fs/mkext4fs/pkg/imagecheck"
	"github.com/mkext4fs/mkext4fs/pkg/imagecheck/imagechecktest"
)

func verify(t *testing.T, f *imagechecktest.Fixture, img string, mod func(*imagecheck.Options)) *imagecheck.Report {
	t.Helper()
	opts := imagecheck.Options{
		Closure:   f.Closure(t),
		Timestamp: 1,
		Source:    f.Root,
		Files:     f.Files,
	}
	if mod != nil {
		mod(&opts)
	}
	r, err := imagecheck.Verify(context.Background(), img, opts)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return r
}

func copyFile(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// inodeOf looks a name up with debugfs' ls -p of its directory, so that
// names debugfs cannot take on its command line can be addressed by number.
func inodeOf(t *testing.T, img, dir, name string) int {
	t.Helper()
	out, err := exec.Command(testutil.RequireTool(t, "debugfs"), "-R", "ls -p "+dir, img).Output()
	if err != nil {
		t.Fatalf("debugfs ls -p %s: %v", dir, err)
	}
	m := regexp.MustCompile(`(?m)^/(\d+)/\d+/\d+/\d+/` + regexp.QuoteMeta(name) + `/`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("%q not in the listing of %s:\n%s", name, dir, out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// corruptByte flips the first byte of a file's first block in the image.
func corruptByte(t *testing.T, img, path string) {
	t.Helper()
	debugfs := testutil.RequireTool(t, "debugfs")
	out, err := exec.Command(debugfs, "-R", "bmap "+path+" 0", img).Output()
	if err != nil {
		t.Fatalf("debugfs bmap: %v", err)
	}
	blk, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil || blk == 0 {
		t.Fatalf("debugfs bmap %s: %q", path, out)
	}
	fh, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	b := make([]byte, 1)
	if _, err := fh.ReadAt(b, blk*4096); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x20
	if _, err := fh.WriteAt(b, blk*4096); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyMatches(t *testing.T) {
	f := imagechecktest.NewFixture(t, imagechecktest.Options{NewlineNames: true})
	img := f.MkfsImage(t)
	r := verify(t, f, img, nil)
	if !r.Match() {
		t.Fatalf("a faithful image does not match:\n%s", strings.Join(r.Differences, "\n"))
	}
	if r.StorePaths != 3 {
		t.Errorf("StorePaths = %d, want 3", r.StorePaths)
	}
	// Without the source: canonical modes, and the --files content only
	// loosely.
	r = verify(t, f, img, func(o *imagecheck.Options) { o.Source, o.Files = "", "" })
	if !r.Match() {
		t.Fatalf("without source: a faithful image does not match:\n%s", strings.Join(r.Differences, "\n"))
	}
}

func TestVerifyFindsDifferences(t *testing.T) {
	debugfs := testutil.RequireTool(t, "debugfs")
	f := imagechecktest.NewFixture(t, imagechecktest.Options{NewlineNames: true})
	clean := f.MkfsImage(t)
	top := imagechecktest.TopPath
	tests := []struct {
		name    string
		corrupt func(t *testing.T, img string)
		opts    func(*imagecheck.Options)
		want    []string // regular expressions, each must match one difference
	}{
		{
			name:    "changed byte",
			corrupt: func(t *testing.T, img string) { corruptByte(t, img, top+"/share/doc/README") },
			want:    []string{`^` + regexp.QuoteMeta(top+"/share/doc/README") + `: content differs from `},
		},
		{
			name:    "changed byte without source",
			corrupt: func(t *testing.T, img string) { corruptByte(t, img, top+"/share/doc/README") },
			opts:    func(o *imagecheck.Options) { o.Source = "" },
			want:    []string{`^` + regexp.QuoteMeta(top) + `: content differs from the closure: NAR hash sha256:`},
		},
		{
			name: "removed entry",
			corrupt: func(t *testing.T, img string) {
				imagechecktest.DebugfsW(t, debugfs, img, "rm "+top+"/share/doc/README\n")
			},
			want: []string{`^` + regexp.QuoteMeta(top+"/share/doc/README") + `: missing \(the source has a regular file\)$`},
		},
		{
			name: "extra entry",
			corrupt: func(t *testing.T, img string) {
				imagechecktest.DebugfsW(t, debugfs, img, fmt.Sprintf("write %s %s/share/extra\nsif %s/share/extra mode 0100444\n", f.Graph, top, top))
			},
			want: []string{`^` + regexp.QuoteMeta(top+"/share/extra") + `: extra entry \(a regular file the source does not have\)$`},
		},
		{
			name: "extra store path",
			corrupt: func(t *testing.T, img string) {
				imagechecktest.DebugfsW(t, debugfs, img, "mkdir /nix/store/3mm1k4x3dk7s5k1g8k8zyw2v4y6qy8xz-evil\n")
			},
			want: []string{`^/nix/store/3mm1k4x3dk7s5k1g8k8zyw2v4y6qy8xz-evil: extra entry in the store \(a directory not in the closure\)$`},
		},
		{
			name: "missing store path",
			corrupt: func(t *testing.T, img string) {
				imagechecktest.DebugfsW(t, debugfs, img, "rm "+imagechecktest.DataPath+"\n")
			},
			want: []string{`^` + regexp.QuoteMeta(imagechecktest.DataPath) + `: missing from the image$`},
		},
		{
			name: "wrong mode",
			corrupt: func(t *testing.T, img string) {
				imagechecktest.DebugfsW(t, debugfs, img, "sif "+top+"/bin/hello mode 0100755\n")
			},
			want: []string{`^` + regexp.QuoteMeta(top+"/bin/hello") + `: mode 0755, the source has 0555$`},
		},
		{
			name: "wrong mode without source",
			corrupt: func(t *testing.T, img string) {
				imagechecktest.DebugfsW(t, debugfs, img, "sif "+top+"/share/doc mode 040755\n")
			},
			opts: func(o *imagecheck.Options) { o.Source = "" },
			want: []string{`^` + regexp.QuoteMeta(top+"/share/doc") + `: mode 0755, want 0555$`},
		},
		{
			name: "lost executable bit",
			corrupt: func(t *testing.T, img string) {
				imagechecktest.DebugfsW(t, debugfs, img, "sif "+top+"/bin/hello mode 0100444\n")
			},
			want: []string{
				`^` + regexp.QuoteMeta(top+"/bin/hello") + `: mode 0444, the source has 0555$`,
				`^` + regexp.QuoteMeta(top) + `: content differs from the closure: NAR hash`,
			},
		},
		{
			name: "hostile name with wrong mode",
			corrupt: func(t *testing.T, img string) {
				ino := inodeOf(t, img, top+"/names", "new\nline")
				imagechecktest.DebugfsW(t, debugfs, img, fmt.Sprintf("sif <%d> mode 0100644\n", ino))
			},
			want: []string{`^"` + regexp.QuoteMeta(top+`/names/new\nline`) + `": mode 0644, the source has 0444$`},
		},
		{
			name: "wrong owner",
			corrupt: func(t *testing.T, img string) {
				imagechecktest.DebugfsW(t, debugfs, img, "sif "+imagechecktest.LibPath+"/lib uid 1000\n")
			},
			want: []string{`^` + regexp.QuoteMeta(imagechecktest.LibPath+"/lib") + `: owner 1000:0, want 0:0$`},
		},
		{
			name: "owner flag",
			opts: func(o *imagecheck.Options) { o.UID, o.GID = 0, 30000 },
			want: []string{`^` + regexp.QuoteMeta(imagechecktest.LibPath) + `: owner 0:0, want 0:30000$`},
		},
		{
			name: "store directory mode",
			corrupt: func(t *testing.T, img string) {
				imagechecktest.DebugfsW(t, debugfs, img, "sif /nix/store mode 040755\n")
			},
			want: []string{`^/nix/store: mode 0755, want 1775$`},
		},
		{
			name: "wrong time",
			corrupt: func(t *testing.T, img string) {
				imagechecktest.DebugfsW(t, debugfs, img, "sif "+top+"/share/hello-link mtime @5\n")
			},
			want: []string{`^` + regexp.QuoteMeta(top+"/share/hello-link") + `: mtime 5, want 1$`},
		},
		{
			name: "timestamp option",
			opts: func(o *imagecheck.Options) { o.Timestamp = 315532800 },
			want: []string{`^/: atime 1, ctime 1, mtime 1, crtime 1, want 315532800$`},
		},
		{
			name: "changed symlink target",
			corrupt: func(t *testing.T, img string) {
				imagechecktest.DebugfsW(t, debugfs, img, "rm "+top+"/share/hello-link\nsymlink "+top+"/share/hello-link ../bin/hellO\n")
				imagechecktest.SetAllTimes(t, debugfs, img, 1)
			},
			want: []string{`^` + regexp.QuoteMeta(top+"/share/hello-link") + `: symlink target ../bin/hellO, the source has ../bin/hello$`},
		},
		{
			name: "changed long symlink target",
			corrupt: func(t *testing.T, img string) {
				imagechecktest.DebugfsW(t, debugfs, img, "rm "+top+"/share/long-link\nsymlink "+top+"/share/long-link "+imagechecktest.LongLinkTarget+"X\n")
				imagechecktest.SetAllTimes(t, debugfs, img, 1)
			},
			want: []string{
				`^` + regexp.QuoteMeta(top+"/share/long-link") + `: symlink target ` + regexp.QuoteMeta(imagechecktest.LongLinkTarget) + `X, the source has `,
				`^` + regexp.QuoteMeta(top) + `: content differs from the closure: NAR hash`,
			},
		},
		{
			name: "registration changed",
			corrupt: func(t *testing.T, img string) {
				reg := filepath.Join(t.TempDir(), "reg")
				if err := os.WriteFile(reg, []byte("/nix/store/x\n"), 0o444); err != nil {
					t.Fatal(err)
				}
				imagechecktest.DebugfsW(t, debugfs, img, "rm /nix-path-registration\nwrite "+reg+" /nix-path-registration\n")
				imagechecktest.SetAllTimes(t, debugfs, img, 1)
			},
			want: []string{`^/nix-path-registration: differs from the closure's registration: line 1: "/nix/store/x\\n", want "` + regexp.QuoteMeta(imagechecktest.TopPath)},
		},
		{
			name: "registration missing",
			corrupt: func(t *testing.T, img string) {
				imagechecktest.DebugfsW(t, debugfs, img, "rm /nix-path-registration\n")
			},
			want: []string{`^/nix-path-registration: missing \(want a regular file\)$`},
		},
		{
			name: "files content changed",
			corrupt: func(t *testing.T, img string) {
				corruptByte(t, img, "/boot/extlinux/extlinux.conf")
			},
			want: []string{`^/boot/extlinux/extlinux.conf: content differs from `},
		},
		{
			name: "unindexed big directory",
			corrupt: func(t *testing.T, img string) {
				out := imagechecktest.DebugfsW(t, debugfs, img, "stat "+top+"/big\n")
				m := regexp.MustCompile(`Flags: 0x([0-9a-f]+)`).FindStringSubmatch(out)
				flags, _ := strconv.ParseUint(m[1], 16, 32)
				imagechecktest.DebugfsW(t, debugfs, img, fmt.Sprintf("sif %s/big flags 0x%x\n", top, flags&^imagecheck.FlagIndex))
			},
			want: []string{`^` + regexp.QuoteMeta(top+"/big") + `: directory of \d+ blocks without an htree index$`},
		},
		{
			name: "inconsistent link count",
			corrupt: func(t *testing.T, img string) {
				imagechecktest.DebugfsW(t, debugfs, img, "sif "+top+"/share/empty links_count 2\n")
			},
			want: []string{
				`^e2fsck reports problems: `,
				`^` + regexp.QuoteMeta(top+"/share/empty") + `: link count 2, but 1 entries name inode \d+$`,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := copyFile(t, clean)
			if tc.corrupt != nil {
				tc.corrupt(t, img)
			}
			r := verify(t, f, img, tc.opts)
			t.Logf("differences:\n%s", strings.Join(r.Summary(20), "\n"))
			if r.Match() {
				t.Fatal("the damaged image matches")
			}
			for _, w := range tc.want {
				re := regexp.MustCompile(w)
				found := false
				for _, d := range r.Differences {
					if re.MatchString(d) {
						found = true
					}
				}
				if !found {
					t.Errorf("no difference matches %s; got:\n%s", w, strings.Join(r.Differences, "\n"))
				}
			}
		})
	}
}

// TestVerifyUnprivileged runs Verify as an unprivileged user (nobody), as
// in a Nix build: it must need nothing but read access to the image and the
// source, and leave nothing behind in the temporary directory.
func TestVerifyUnprivileged(t *testing.T) {
	testutil.RequireRoot(t)
	f := imagechecktest.NewFixture(t, imagechecktest.Options{NewlineNames: true})
	img := f.MkfsImage(t)
	const nobody = 65534
	// Everything the helper reads must be reachable by nobody: open up the
	// test's own directories, nothing above them.
	shared := t.TempDir()
	top := filepath.Clean(os.TempDir())
	for _, d := range []string{filepath.Dir(f.Root), filepath.Dir(img), shared} {
		for p := d; strings.HasPrefix(p, top+"/"); p = filepath.Dir(p) {
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode()&0o005 != 0o005 {
				if err := os.Chmod(p, st.Mode().Perm()|0o005); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if st, err := os.Stat(top); err != nil || st.Mode()&0o005 != 0o005 {
		t.Skipf("%s is not searchable by others: %v", top, err)
	}
	if err := os.Chmod(img, 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(shared, "tmp")
	if err := os.Mkdir(tmp, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o777); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(shared, "imagecheck.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		corrupt string
		want    string
	}{
		{name: "match", want: "MATCH\n"},
		{name: "mismatch", corrupt: "sif " + imagechecktest.TopPath + "/share/doc mode 040755\n",
			want: imagechecktest.TopPath + "/share/doc: mode 0755, the source has 0555\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			im := img
			if tc.corrupt != "" {
				im = filepath.Join(filepath.Dir(img), tc.name+".ext4")
				data, err := os.ReadFile(img)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(im, data, 0o644); err != nil {
					t.Fatal(err)
				}
				imagechecktest.DebugfsW(t, testutil.RequireTool(t, "debugfs"), im, tc.corrupt)
			}
			cmd := exec.Command(bin, "-test.run=^TestVerifyHelper$")
			cmd.Env = append(os.Environ(), "IMAGECHECK_HELPER=1", "HELPER_IMAGE="+im, "HELPER_GRAPH="+f.Graph,
				"HELPER_ROOT="+f.Root, "HELPER_FILES="+f.Files, "TMPDIR="+tmp)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("helper as nobody: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), fmt.Sprintf("EUID %d\n", nobody)) || !strings.Contains(string(out), tc.want) {
				t.Errorf("helper as nobody printed:\n%s\nwant %q", out, tc.want)
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("files were left behind in %s: %v", tmp, left)
			}
		})
	}
}

// TestVerifyHelper is TestVerifyUnprivileged's other process.
func TestVerifyHelper(t *testing.T) {
	if os.Getenv("IMAGECHECK_HELPER") == "" {
		t.Skip("run by TestVerifyUnprivileged")
	}
	c, err := closure.Load([]string{os.Getenv("HELPER_GRAPH")}, closure.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hash(context.Background(), closure.HashOptions{Root: os.Getenv("HELPER_ROOT")}); err != nil {
		t.Fatal(err)
	}
	r, err := imagecheck.Verify(context.Background(), os.Getenv("HELPER_IMAGE"), imagecheck.Options{
		Closure: c, Timestamp: 1, Source: os.Getenv("HELPER_ROOT"), Files: os.Getenv("HELPER_FILES"),
	})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("EUID %d\n", os.Geteuid())
	if r.Match() {
		fmt.Println("MATCH")
	}
	for _, d := range r.Differences {
		fmt.Println(d)
	}
}

// TestVerifyDotDotNames: a store path with a name go-nix's NAR writer cannot
// serialize is a warning, as in mkext4fs build, and is compared with the
// source file by file instead.
func TestVerifyDotDotNames(t *testing.T) {
	debugfs := testutil.RequireTool(t, "debugfs")
	f := imagechecktest.NewFixture(t, imagechecktest.Options{DotDotName: true})
	img := f.MkfsImage(t)
	top := imagechecktest.TopPath
	for _, tc := range []struct {
		name     string
		corrupt  func(t *testing.T, img string)
		noSource bool
		warning  string
		want     string
	}{
		{name: "match", warning: "compared file by file with the source instead"},
		{name: "match without source", noSource: true, warning: "its contents are not checked"},
		{name: "changed byte", corrupt: func(t *testing.T, img string) { corruptByte(t, img, top+"/share/..dots") },
			warning: "compared file by file", want: `^` + regexp.QuoteMeta(top+"/share/..dots") + `: content differs from `},
		{name: "removed entry", corrupt: func(t *testing.T, img string) {
			imagechecktest.DebugfsW(t, debugfs, img, "rm "+top+"/share/doc/README\n")
		}, warning: "compared file by file", want: `^` + regexp.QuoteMeta(top+"/share/doc/README") + `: missing`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			im := img
			if tc.corrupt != nil {
				im = copyFile(t, img)
				tc.corrupt(t, im)
			}
			r := verify(t, f, im, func(o *imagecheck.Options) {
				if tc.noSource {
					o.Source = ""
				}
			})
			if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], top+": ") || !strings.Contains(r.Warnings[0], tc.warning) {
				t.Errorf("warnings %q, want one about %s: %s", r.Warnings, top, tc.warning)
			}
			if tc.want == "" {
				if !r.Match() {
					t.Errorf("differences:\n%s", strings.Join(r.Differences, "\n"))
				}
				return
			}
			found := false
			for _, d := range r.Differences {
				found = found || regexp.MustCompile(tc.want).MatchString(d)
			}
			if !found {
				t.Errorf("no difference matches %s; got:\n%s", tc.want, strings.Join(r.Differences, "\n"))
			}
		})
	}
}
