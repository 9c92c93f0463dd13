package debugfsgen

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/mkext4fs/mkext4fs/internal/testutil"
	"github.com/mkext4fs/mkext4fs/pkg/plan"
)

// debugfsRun feeds lines to the real debugfs on image and returns what it
// printed, stdout and stderr interleaved.
func debugfsRun(t *testing.T, debugfs, image string, write bool, lines []string) []string {
	t.Helper()
	args := []string{"-f", "-", image}
	if write {
		args = append([]string{"-w"}, args...)
	}
	cmd := exec.Command(debugfs, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C", "TZ=UTC"}
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("debugfs: %v: %s", err, out.String())
	}
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(got) > 0 && strings.HasPrefix(got[0], "debugfs 1.") {
		got = got[1:]
	}
	return got
}

// TestRealDebugfs runs a generated script for hostile names through the
// real debugfs: every line is echoed exactly as sent and nothing else is
// printed but the inode numbers of writes, and "ls -p" of every directory
// then lists exactly the planned names, with the planned symlink targets
// and file contents. A name such as `x" rm y` stays one name: y is still
// there, and nothing else was made.
func TestRealDebugfs(t *testing.T) {
	mke2fs := testutil.RequireTool(t, "mke2fs")
	debugfs := testutil.RequireTool(t, "debugfs")
	root := t.TempDir()
	tree, err := storeTree(root, "0123456789abcdfghijklmnpqrsvwxyz-hostile", func(dir string) error {
		if err := hostileFill(dir); err != nil {
			return err
		}
		for _, name := range []string{"y", "victim"} {
			if err := os.WriteFile(filepath.Join(dir, "files", name), []byte(name), 0o444); err != nil {
				return err
			}
		}
		for _, name := range []string{`victim" "x`, "\"; rm victim; mkdir pwned; \"", "\t rm victim"} {
			if err := os.WriteFile(filepath.Join(dir, "files", name), []byte(name), 0o444); err != nil {
				return err
			}
			if err := os.Symlink(name, filepath.Join(dir, "links", "t"+strconv.Itoa(len(name)))); err != nil {
				return err
			}
		}
		return nil
	}, plan.Options{StageBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Generate(tree, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Phases) != 1 {
		t.Fatalf("%d phases, want 1 without staging", len(s.Phases))
	}
	image := filepath.Join(t.TempDir(), "image")
	if err := os.WriteFile(image, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(image, 64<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mke2fs, "-q", "-F", "-t", "ext4", "-b", "4096", image).CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v: %s", err, out)
	}

	lines := s.Phases[0]
	out := debugfsRun(t, debugfs, image, true, lines)
	next := 0
	for _, o := range out {
		switch {
		case next < len(lines) && o == "debugfs: "+lines[next]:
			next++
		case next > 0 && strings.HasPrefix(o, "Allocated inode: ") && strings.HasPrefix(lines[next-1], "write "):
		default:
			t.Errorf("after line %d: unexpected output %q", next, o)
		}
	}
	if next != len(lines) {
		t.Fatalf("debugfs echoed %d of %d lines", next, len(lines))
	}

	// List every directory of the plan in one debugfs run.
	var dirs []*plan.Node
	tree.Walk(func(n *plan.Node) bool {
		if n.Kind == plan.Dir {
			dirs = append(dirs, n)
		}
		return true
	})
	var ls []string
	for _, d := range dirs {
		q, err := Quote(d.Path())
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, "ls -p "+q)
	}
	listing := parseListings(t, debugfsRun(t, debugfs, image, false, ls), ls)
	type link struct {
		ino  string
		size int
		want string
	}
	var links []link
	var files []*plan.Node
	var fileInos []string
	for i, d := range dirs {
		want := []string{".", ".."}
		for _, c := range d.Children() {
			want = append(want, c.Name)
		}
		if d == tree.Root {
			want = append(want, "lost+found")
		}
		sort.Strings(want)
		var got []string
		for name := range listing[i] {
			got = append(got, name)
		}
		sort.Strings(got)
		if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
			t.Errorf("%q holds %q, want %q", d.Path(), got, want)
			continue
		}
		for _, c := range d.Children() {
			e := listing[i][c.Name]
			switch c.Kind {
			case plan.Symlink:
				links = append(links, link{e.ino, e.size, c.Target()})
			case plan.File:
				files = append(files, c)
				fileInos = append(fileInos, e.ino)
			}
		}
	}
	if len(links) < len(awkward) || len(files) < 2*len(awkward) {
		t.Fatalf("only %d symlinks and %d files listed", len(links), len(files))
	}

	// Targets: short ones from stat, long ones dumped; file contents dumped.
	dumps := t.TempDir()
	var cmds []string
	for i, l := range links {
		if l.size < 60 {
			cmds = append(cmds, "stat <"+l.ino+">")
		} else {
			cmds = append(cmds, fmt.Sprintf("dump <%s> %s/link%d", l.ino, dumps, i))
		}
	}
	for i, ino := range fileInos {
		cmds = append(cmds, fmt.Sprintf("dump <%s> %s/file%d", ino, dumps, i))
	}
	var fast []string
	for _, o := range debugfsRun(t, debugfs, image, false, cmds) {
		if tg, ok := strings.CutPrefix(o, `Fast link dest: "`); ok {
			fast = append(fast, strings.TrimSuffix(tg, `"`))
		}
	}
	for i, l := range links {
		var got string
		if l.size < 60 {
			if len(fast) == 0 {
				t.Fatalf("no target printed for inode %s", l.ino)
			}
			got, fast = fast[0], fast[1:]
		} else {
			b, err := os.ReadFile(fmt.Sprintf("%s/link%d", dumps, i))
			if err != nil {
				t.Fatal(err)
			}
			got = string(b)
		}
		if got != l.want {
			t.Errorf("symlink inode %s: target %q, want %q", l.ino, got, l.want)
		}
	}
	for i, f := range files {
		got, err := os.ReadFile(fmt.Sprintf("%s/file%d", dumps, i))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(f.Host())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%q: content %q, want %q", f.Path(), got, want)
		}
	}
}

type lsEntry struct {
	ino  string
	size int
}

// parseListings splits the output of a run of "ls -p" commands into one
// listing per command: name to inode and size. ls -p prints each entry as
// /INODE/MODE/UID/GID/NAME/SIZE/, the name's bytes raw (names cannot hold
// '/' or a newline).
func parseListings(t *testing.T, out, cmds []string) []map[string]lsEntry {
	t.Helper()
	var res []map[string]lsEntry
	next := 0
	for _, o := range out {
		if next < len(cmds) && o == "debugfs: "+cmds[next] {
			res = append(res, map[string]lsEntry{})
			next++
			continue
		}
		if o == "" {
			continue
		}
		f := strings.Split(o, "/")
		if len(res) == 0 || len(f) != 8 || f[0] != "" || f[7] != "" {
			t.Fatalf("after %q: unexpected line %q", cmds[next-1], o)
		}
		size, _ := strconv.Atoi(f[6])
		res[len(res)-1][f[5]] = lsEntry{ino: f[1], size: size}
	}
	if next != len(cmds) {
		t.Fatalf("debugfs echoed %d of %d ls commands", next, len(cmds))
	}
	return res
}

// TestHardLinksIntoFullDirectory: under Optimise, a file equal to an
// earlier one becomes a hard link; debugfs' ln does not grow a directory
// whose blocks are full, so the script must make room first. A directory
// of 300 identical files (several blocks, not staged) is built whole.
func TestHardLinksIntoFullDirectory(t *testing.T) {
	mke2fs := testutil.RequireTool(t, "mke2fs")
	debugfs := testutil.RequireTool(t, "debugfs")
	tree, err := storeTree(t.TempDir(), "0123456789abcdfghijklmnpqrsvwxyz-dups", func(dir string) error {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		for i := 0; i < 300; i++ {
			name := fmt.Sprintf("file-%03d-%s", i, strings.Repeat("x", 30))
			if err := os.WriteFile(filepath.Join(dir, name), []byte("same"), 0o444); err != nil {
				return err
			}
		}
		return nil
	}, plan.Options{StageBytes: -1, Optimise: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Generate(tree, Options{})
	if err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(t.TempDir(), "image")
	if err := os.WriteFile(image, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(image, 64<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mke2fs, "-q", "-F", "-t", "ext4", "-b", "4096", "-O", "^metadata_csum", image).CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v: %s", err, out)
	}
	lines := s.Phases[0]
	next := 0
	for _, o := range debugfsRun(t, debugfs, image, true, lines) {
		switch {
		case next < len(lines) && o == "debugfs: "+lines[next]:
			next++
		case next > 0 && strings.HasPrefix(o, "Allocated inode: ") && strings.HasPrefix(lines[next-1], "write "):
		case next > 0 && o == "" && strings.HasPrefix(lines[next-1], "rm "):
		default:
			t.Fatalf("after line %d %q: %q", next, lines[next-1], o)
		}
	}
	dir := tree.Store.Children()[0]
	ls := []string{"ls -p " + dir.Path()}
	listing := parseListings(t, debugfsRun(t, debugfs, image, false, ls), ls)[0]
	ino := listing[dir.Children()[0].Name].ino
	for _, c := range dir.Children() {
		if e, ok := listing[c.Name]; !ok || e.ino != ino {
			t.Errorf("%s: %+v, want a link to inode %s", c.Name, e, ino)
		}
	}
	if len(listing) != len(dir.Children())+2 {
		t.Errorf("the directory holds %d entries, want %d", len(listing)-2, len(dir.Children()))
	}
}
