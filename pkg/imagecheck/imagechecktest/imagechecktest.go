// Package imagechecktest makes what the tests of image checks need: a small
// closure on disk with awkward names, and an image of it in mkext4fs' layout
// made independently of mkext4fs, with mkfs.ext4 -d and debugfs.
package imagechecktest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/mkext4fs/mkext4fs/internal/testutil"
	"github.com/mkext4fs/mkext4fs/pkg/closure"
)

// Fixture is a closure whose store paths live under Root.
type Fixture struct {
	// Root holds the store: store path p is at Root+p.
	Root string
	// Graph is a text-form exportReferencesGraph file of the closure.
	Graph string
	// Paths are the store paths, sorted; Top is the one that refers to the
	// others.
	Paths []string
	Top   string
	// Files is a directory for build --files: /boot/extlinux/extlinux.conf.
	Files string

	dotDot bool
}

// Store paths of the fixture. The hash parts are valid nix-base32.
const (
	TopPath  = "/nix/store/0c7g4sm0x4qnc2v8hlgv2c3zqcpl8j2y-hello-2.12"
	LibPath  = "/nix/store/1ffi4zm7dz4v3ji95ysj3dj1xqh4qq4l-libgreet-1.0"
	DataPath = "/nix/store/2ma8cn5d40l3zvyawqr2b7b4ndmc4iqs-greeting.txt"
)

// LongLinkTarget is the target of TopPath/share/long-link, longer than the
// 59 bytes an inode holds.
const LongLinkTarget = "../../../../../../../../../../../../../../../../../../../../../../../..//nix/store/long/target"

// BigDirEntries is how many files the fixture's big directory holds: more
// than one 4 KiB block of entries, so the directory must be indexed.
const BigDirEntries = 300

// HostileNames are file names in the fixture that a careless reader or
// writer of debugfs commands and output would get wrong.
var HostileNames = []string{
	"with space",
	"tab\there",
	`quote"inside`,
	"debugfs: stat <2>",
	"-x",
	"<12>",
	"#hash",
	"back\\slash",
	"utf8-\u00e9\u6f22",
	strings.Repeat("n", 255),
}

// NewlineNames are names with newlines, which a Linux filesystem allows
// but debugfs commands cannot carry (so mkext4fs build refuses them): only
// in images made with mkfs.ext4 -d.
var NewlineNames = []string{
	"new\nline",
	"\nInode: 2   Type: directory",
	"\ndebugfs: ls -p <2>\n",
}

// Options change the fixture.
type Options struct {
	// NewlineNames adds the NewlineNames to the hostile ones.
	NewlineNames bool
	// DotDotName adds TopPath/share/..dots, a name go-nix's NAR writer
	// cannot serialize: Closure then gives the top path a made-up hash.
	DotDotName bool
}

// FakeNarHash is the hash Closure gives a store path it cannot hash.
const FakeNarHash = "sha256:0000000000000000000000000000000000000000000000000000"

// NewFixture writes the fixture closure under a test directory: a top path
// with an executable, a symlink, a big directory and the hostile names; a
// library it refers to; and a store path that is a single file.
func NewFixture(t testing.TB, opts Options) *Fixture {
	t.Helper()
	dir := t.TempDir()
	f := &Fixture{
		Root:  filepath.Join(dir, "src"),
		Graph: filepath.Join(dir, "closure-hello"),
		Paths: []string{TopPath, LibPath, DataPath},
		Top:   TopPath,
		Files: filepath.Join(dir, "files"),
	}
	top := filepath.Join(f.Root, TopPath)
	lib := filepath.Join(f.Root, LibPath)
	files := map[string]struct {
		content string
		mode    os.FileMode
	}{
		top + "/bin/hello":                       {"#!/bin/sh\necho hello from " + LibPath + "\n", 0o555},
		top + "/share/doc/README":                {"hello, a test package\n", 0o444},
		top + "/share/doc/README.same":           {"hello, a test package\n", 0o444},
		top + "/share/empty":                     {"", 0o444},
		top + "/share/tricky":                    {"no newline at the end\ndebugfs: cat <2>\n# mkext4fs-00000000000000000000000000000000 1\nend", 0o444},
		lib + "/lib/libgreet.so":                 {"\x7fELF not really\x00\x01\x02", 0o444},
		filepath.Join(f.Root, DataPath):          {"good morning\n", 0o444},
		f.Files + "/boot/extlinux/extlinux.conf": {"DEFAULT nixos\nLABEL nixos\n  LINUX /boot/vmlinuz\n", 0o644},
	}
	names := HostileNames
	if opts.NewlineNames {
		names = append(append([]string(nil), names...), NewlineNames...)
	}
	for _, name := range names {
		files[top+"/names/"+name] = struct {
			content string
			mode    os.FileMode
		}{"named " + strconv.Quote(name) + "\n", 0o444}
	}
	for i := 0; i < BigDirEntries; i++ {
		files[fmt.Sprintf("%s/big/entry-with-a-name-long-enough-to-fill-blocks-%04d", top, i)] = struct {
			content string
			mode    os.FileMode
		}{strconv.Itoa(i), 0o444}
	}
	for p, c := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c.content), c.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, c.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../bin/hello", top+"/share/hello-link"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(LibPath+"/lib/libgreet.so", top+"/libgreet.so"); err != nil {
		t.Fatal(err)
	}
	// Too long to be kept in the inode: stored in a block.
	if err := os.Symlink(LongLinkTarget, top+"/share/long-link"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(top+"/share/emptydir", 0o755); err != nil {
		t.Fatal(err)
	}
	if opts.DotDotName {
		f.dotDot = true
		if err := os.WriteFile(top+"/share/..dots", []byte("dots\n"), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	// Store directories are read-only, as in a real store.
	for _, p := range []string{TopPath, LibPath} {
		err := filepath.Walk(filepath.Join(f.Root, p), func(fp string, fi os.FileInfo, err error) error {
			if err != nil || !fi.IsDir() {
				return err
			}
			return os.Chmod(fp, 0o555)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = makeWritable(f.Root) })

	graph := TopPath + "\n\n3\n" + DataPath + "\n" + LibPath + "\n" + TopPath + "\n" +
		LibPath + "\n\n0\n" +
		DataPath + "\n\n0\n"
	if err := os.WriteFile(f.Graph, []byte(graph), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func makeWritable(dir string) error {
	return filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.IsDir() {
			return os.Chmod(p, 0o755)
		}
		return nil
	})
}

// Closure loads the fixture's graph and hashes it from Root.
func (f *Fixture) Closure(t testing.TB) *closure.Closure {
	t.Helper()
	c, err := closure.Load([]string{f.Graph}, closure.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range c.Paths {
		if f.dotDot && c.Paths[i].Path == TopPath {
			c.Paths[i].NarHash, c.Paths[i].NarSize = FakeNarHash, 1
		}
	}
	if err := c.Hash(context.Background(), closure.HashOptions{Root: f.Root}); err != nil {
		t.Fatal(err)
	}
	return c
}

// Registration is what the closure package writes for the fixture.
func (f *Fixture) Registration(t testing.TB) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := f.Closure(t).WriteRegistration(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// MkfsImage builds an image of the fixture in mkext4fs' layout without
// mkext4fs: the tree is staged with cp -a, chmod and chown, written with
// mkfs.ext4 -d, indexed with e2fsck -fyD, and every inode's times are set
// to 1 with debugfs. It needs root (for chown) and e2fsprogs.
func (f *Fixture) MkfsImage(t testing.TB) string {
	t.Helper()
	testutil.RequireRoot(t)
	mkfs := testutil.RequireTool(t, "mkfs.ext4")
	e2fsck := testutil.RequireTool(t, "e2fsck")
	debugfs := testutil.RequireTool(t, "debugfs")
	reg := f.Registration(t)

	dir := t.TempDir()
	stage := filepath.Join(dir, "stage")
	run(t, "mkdir", "-p", stage+"/nix/store")
	for _, p := range f.Paths {
		run(t, "cp", "-a", "--", f.Root+p, stage+"/nix/store/")
	}
	run(t, "cp", "-a", "--", f.Files+"/.", stage+"/")
	run(t, "chown", "-R", "0:0", stage)
	run(t, "find", stage+"/boot", "-type", "d", "-exec", "chmod", "0755", "{}", "+")
	run(t, "chmod", "0755", stage, stage+"/nix")
	run(t, "chown", "0:30000", stage+"/nix/store")
	run(t, "chmod", "1775", stage+"/nix/store")
	if err := os.WriteFile(stage+"/nix-path-registration", reg, 0o444); err != nil {
		t.Fatal(err)
	}
	run(t, "chmod", "0444", stage+"/nix-path-registration")

	img := filepath.Join(dir, "image.ext4")
	run(t, mkfs, "-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256", "-N", "1024",
		"-L", "NIXOS_SD", "-U", "44444444-4444-4444-8888-888888888888",
		"-E", "hash_seed=44444444-4444-4444-8888-888888888888", "-d", stage, img, "16M")
	// e2fsck -fyD exits 1 when it changed something: that is the point.
	if out, err := exec.Command(e2fsck, "-fyD", img).CombinedOutput(); err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Fatalf("e2fsck -fyD: %v\n%s", err, out)
		}
	}
	SetAllTimes(t, debugfs, img, 1)
	run(t, e2fsck, "-fn", img)
	return img
}

var inUse = regexp.MustCompile(`(?m)^Inode (\d+) is marked in use$`)

// SetAllTimes sets atime, ctime, mtime and crtime of every inode in use
// (the root and those from the first non-reserved one on) to ts.
func SetAllTimes(t testing.TB, debugfs, img string, ts int64) {
	t.Helper()
	out := DebugfsW(t, debugfs, img, "stats -h")
	m := regexp.MustCompile(`(?m)^Inode count:\s+(\d+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no inode count in:\n%s", out)
	}
	count, _ := strconv.Atoi(m[1])
	var script strings.Builder
	for i := 1; i <= count; i++ {
		fmt.Fprintf(&script, "testi <%d>\n", i)
	}
	out = DebugfsW(t, debugfs, img, script.String())
	script.Reset()
	for _, m := range inUse.FindAllStringSubmatch(out, -1) {
		ino, _ := strconv.Atoi(m[1])
		if ino != 2 && ino < 11 {
			continue
		}
		for _, field := range []string{"atime", "ctime", "mtime", "crtime"} {
			fmt.Fprintf(&script, "sif <%d> %s @%d\n", ino, field, ts)
		}
	}
	DebugfsW(t, debugfs, img, script.String())
}

// DebugfsW runs a debugfs script read-write on img and fails the test when
// debugfs reports anything on stderr but its banner.
func DebugfsW(t testing.TB, debugfs, img, script string) string {
	t.Helper()
	cmd := exec.Command(debugfs, "-w", "-f", "-", img)
	cmd.Stdin = strings.NewReader(script)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("debugfs -w: %v\n%s", err, stderr.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if line != "" && !strings.HasPrefix(line, "debugfs 1.") {
			t.Fatalf("debugfs -w reported: %s\nscript:\n%s", stderr.String(), script)
		}
	}
	return stdout.String()
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}
