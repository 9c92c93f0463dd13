package debugfsgen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mkext4fs/mkext4fs/pkg/plan"
)

// validName reports whether a directory entry can have this name.
func validName(s string) bool {
	return s != "" && s != "." && s != ".." && len(s) <= 255 && !strings.ContainsAny(s, "/\x00")
}

// hostileFill makes a store path holding every awkward name as a file, a
// directory and a symlink target, in an ordinary directory and in one big
// enough to be staged, with duplicate files for Optimise.
func hostileFill(dir string) error {
	for _, sub := range []string{"files", "dirs", "links", "staged"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	for i, name := range awkward {
		if !validName(name) {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, "files", name), []byte(name), 0o644); err != nil {
			return err
		}
		if err := os.Mkdir(filepath.Join(dir, "dirs", name), 0o750); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "dirs", name, name), []byte("same"), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(name, filepath.Join(dir, "links", fmt.Sprintf("link%02d", i))); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "staged", name), []byte("same"), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(`t" rm victim "`+name, filepath.Join(dir, "staged", fmt.Sprintf("zlink%02d", i))); err != nil {
			return err
		}
	}
	// Entries of 4064 bytes: a directory the build pads for e2fsck -D.
	if err := os.Mkdir(filepath.Join(dir, "padded"), 0o755); err != nil {
		return err
	}
	for i := 0; i < 16; i++ {
		name := fmt.Sprintf("%02d", i) + strings.Repeat("p", 246)
		if i == 15 {
			name = name[:216]
		}
		if err := os.WriteFile(filepath.Join(dir, "padded", name), nil, 0o444); err != nil {
			return err
		}
	}
	for i := 0; i < 200; i++ {
		if err := os.WriteFile(filepath.Join(dir, "staged", fmt.Sprintf("pad%03d", i)), []byte{byte(i % 3)}, 0o444); err != nil {
			return err
		}
	}
	return nil
}

// generateAndModel plans root's store path, generates the script and the
// late phase (the registration, written from a directory with an awkward
// name), runs them through the model and compares the result with the
// plan.
func generateAndModel(t *testing.T, tree *plan.Tree, hostDir string, csum bool) error {
	t.Helper()
	reg, err := tree.AddLate(`/reg "dir"/<3>/nix-path-registration`, 100, 0o444)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	reg.SetHost(filepath.Join(hostDir, "registration"))
	if err := os.WriteFile(reg.Host(), []byte("reg"), 0o444); err != nil {
		t.Fatal(err)
	}
	s, err := Generate(tree, Options{})
	if err != nil {
		return err
	}
	late, err := Late(tree, csum)
	if err != nil {
		return err
	}
	unpad, err := Unpad(tree, csum)
	if err != nil {
		return err
	}
	m := newMachine()
	if err := m.run(append(s.Phases, late, unpad)...); err != nil {
		t.Fatalf("the script does not do what it means: %v", err)
	}
	if diffs := m.compare(tree); len(diffs) > 0 {
		t.Fatalf("the script builds another tree than the plan:\n%s", strings.Join(diffs, "\n"))
	}
	return nil
}

// TestGenerateModel: for hostile names the script, split as debugfs splits
// it and run in the model, builds exactly the planned tree, staged
// directories and hard links included.
func TestGenerateModel(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts plan.Options
		csum bool
	}{
		{"plain", plan.Options{StageBytes: -1}, false},
		{"staged", plan.Options{StageBytes: 1024}, true},
		{"staged, optimised, owned", plan.Options{StageBytes: 1024, Optimise: true, UID: 7, GID: 30000}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			tree, err := storeTree(root, "0123456789abcdfghijklmnpqrsvwxyz-hostile", hostileFill, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if tc.opts.StageBytes > 0 && !tree.HasStaged() {
				t.Fatal("no directory is staged")
			}
			pads := 0
			tree.Walk(func(n *plan.Node) bool {
				if plan.PadName(n, true) != "" {
					pads++
				}
				return true
			})
			if pads == 0 {
				t.Fatal("no directory is padded")
			}
			if err := generateAndModel(t, tree, filepath.Join(root, `host "dir" <4>`), tc.csum); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestModelCatchesWrongScripts: the model is able to fail: scripts with
// the mistakes a generator could make are caught.
func TestModelCatchesWrongScripts(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		lines []string
	}{
		{"unquoted blank", []string{"mkdir a b"}},
		{"unbalanced quote", []string{`mkdir "a`}},
		{"inode number", []string{"mkdir d", "cd <2>"}},
		{"name exists", []string{"mkdir d", "mkdir d"}},
		{"write before lcd", []string{"write f f"}},
		{"shell escape", []string{"!touch x"}},
		{"comment", []string{"# mkdir d"}},
		{"unknown command", []string{"rm f"}},
		{"too long", []string{"mkdir " + strings.Repeat("x", MaxLine)}},
		{"link count wrong", []string{"lcd " + dir, "write f a", "ln /a b"}},
		{"unlink missing", []string{"unlink x"}},
	} {
		if err := newMachine().run(tc.lines); err == nil {
			t.Errorf("%s: %q ran in the model", tc.name, tc.lines)
		}
	}
}

// TestGenerateRefuses: names and targets debugfs cannot carry are errors
// that name the entry and its store path.
func TestGenerateRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		fill func(dir string) error
	}{
		{"newline in a name", func(d string) error { return os.WriteFile(filepath.Join(d, "a\nb"), nil, 0o444) }},
		{"carriage return in a directory name", func(d string) error { return os.Mkdir(filepath.Join(d, "a\rb"), 0o755) }},
		{"newline in a target", func(d string) error { return os.Symlink("x\ny", filepath.Join(d, "l")) }},
		{"carriage return in a staged name", func(d string) error {
			for i := 0; i < 600; i++ {
				if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("pad%03d", i)), nil, 0o444); err != nil {
					return err
				}
			}
			return os.WriteFile(filepath.Join(d, "zz\r"), nil, 0o444)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const sp = "0123456789abcdfghijklmnpqrsvwxyz-bad"
			tree, err := storeTree(t.TempDir(), sp, func(d string) error {
				if err := os.Mkdir(d, 0o755); err != nil {
					return err
				}
				return tc.fill(d)
			}, plan.Options{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = Generate(tree, Options{})
			if err == nil {
				t.Fatal("generated a script")
			}
			if !strings.Contains(err.Error(), "(store path /nix/store/"+sp+")") {
				t.Errorf("error does not name the store path: %v", err)
			}
			if !errors.Is(err, ErrUnquotable) {
				t.Errorf("error is not ErrUnquotable: %v", err)
			}
		})
	}
}

// TestLongPaths: paths in the image longer than debugfs' line are entered
// with chained cd commands, and each line stays within MaxLine.
func TestLongPaths(t *testing.T) {
	root := t.TempDir()
	tree, err := storeTree(root, "0123456789abcdfghijklmnpqrsvwxyz-x", func(d string) error {
		return os.WriteFile(d, []byte("x"), 0o444)
	}, plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// 50 directories of 200 bytes: a path of about 10,000 bytes, and one
	// of quotes that doubles when quoted.
	var parts []string
	for i := 0; i < 50; i++ {
		parts = append(parts, fmt.Sprintf("%03d", i)+strings.Repeat("d", 197))
	}
	long := "/" + strings.Join(parts, "/") + "/file"
	quotes := "/" + strings.Repeat(strings.Repeat(`"`, 200)+"/", 25) + "<7>"
	host := filepath.Join(root, "reg")
	if err := os.WriteFile(host, []byte("r"), 0o444); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{long, quotes} {
		n, err := tree.AddLate(p, 10, 0o444)
		if err != nil {
			t.Fatal(err)
		}
		n.SetHost(host)
	}
	s, err := Generate(tree, Options{})
	if err != nil {
		t.Fatal(err)
	}
	late, err := Late(tree, true)
	if err != nil {
		t.Fatal(err)
	}
	cds := 0
	for _, l := range late {
		if len(l) > MaxLine {
			t.Errorf("line of %d bytes", len(l))
		}
		if strings.HasPrefix(l, "cd ") {
			cds++
		}
	}
	if cds < 6 {
		t.Errorf("%d cd commands for two paths of over 8 KiB quoted: not chained", cds)
	}
	m := newMachine()
	if err := m.run(append(s.Phases, late)...); err != nil {
		t.Fatal(err)
	}
	if diffs := m.compare(tree); len(diffs) > 0 {
		t.Fatalf("%s", strings.Join(diffs, "\n"))
	}
}

// fuzzFill makes a store path from fuzzed names: every third a file, a
// directory holding a file of the same name, or a symlink to target+name.
func fuzzFill(names []string, target string) func(dir string) error {
	return func(dir string) error {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		for i, name := range names {
			p := filepath.Join(dir, name)
			var err error
			switch i % 3 {
			case 0:
				err = os.WriteFile(p, []byte(name[:1]), os.FileMode(0o444|i%2*0o111))
			case 1:
				if err = os.Mkdir(p, 0o755); err == nil {
					err = os.WriteFile(filepath.Join(p, name), []byte(name[:1]), 0o444)
				}
			case 2:
				err = os.Symlink(target+name, p)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
}

// FuzzGenerate: for any names (all bytes but '/' and NUL) and symlink
// targets, the script, split as debugfs splits it and run in the model,
// builds exactly the planned tree; or Generate refuses with an error that
// names the entry, for exactly the names and targets debugfs cannot carry.
func FuzzGenerate(f *testing.F) {
	var seed []string
	for _, s := range awkward {
		if validName(s) {
			seed = append(seed, s)
		}
	}
	f.Add(strings.Join(seed, "/"), "", uint8(0))
	f.Add(strings.Join(seed, "/"), `t" rm victim "`, uint8(7))
	f.Add("a/b/c", "../x", uint8(1))
	f.Add("new\nline/x", "t", uint8(2))
	f.Add("x/y/z", "target\rcr", uint8(3))
	f.Add("<1>/<2>/<3>", "<4>", uint8(6))
	f.Fuzz(func(t *testing.T, joined, target string, flags uint8) {
		seen := map[string]bool{}
		var names []string
		unquotable := false
		for _, name := range strings.Split(strings.ReplaceAll(joined, "\x00", ""), "/") {
			if len(name) > 255 {
				name = name[:255]
			}
			if !validName(name) || seen[name] {
				continue
			}
			seen[name] = true
			names = append(names, name)
			unquotable = unquotable || strings.ContainsAny(name, "\n\r")
			if len(names)%3 == 0 && strings.ContainsAny(target, "\n\r") {
				unquotable = true
			}
		}
		target = strings.ReplaceAll(target, "\x00", "")
		if len(target) > 2000 {
			target = target[:2000]
		}
		if len(names) == 0 {
			return
		}
		opts := plan.Options{StageBytes: -1, Optimise: flags&1 != 0}
		if flags&2 != 0 {
			opts.StageBytes = 64
		}
		root := t.TempDir()
		const sp = "0123456789abcdfghijklmnpqrsvwxyz-fuzz"
		tree, err := storeTree(root, sp, fuzzFill(names, target), opts)
		if err != nil {
			t.Skipf("cannot make the tree: %v", err)
		}
		host := names[0]
		if len(host) > 200 {
			host = host[:200]
		}
		err = generateAndModel(t, tree, filepath.Join(root, host+"-host"), flags&4 != 0)
		switch {
		case err == nil && unquotable:
			t.Fatal("generated a script for a name or target with a line end")
		case err != nil && !unquotable:
			t.Fatalf("refused: %v", err)
		case err != nil && (!errors.Is(err, ErrUnquotable) || !strings.Contains(err.Error(), sp)):
			t.Fatalf("unclear error: %v", err)
		}
	})
}

// TestGenerateMerge: under Merge the first phase is the only one; it makes
// every deferred entry in exactly one chunk directory, in order, and lists
// the chunks' and the directories' blocks; MergeLines removes the chunks
// (link count 0 first, which kill_file leaves) and names files of merged
// directories by inode.
func TestGenerateMerge(t *testing.T) {
	fill := func(dir string) error {
		if err := hostileFill(dir); err != nil {
			return err
		}
		// Enough entries to defer, some with the same content (hard
		// links under Optimise).
		for i := 0; i < 400; i++ {
			name := fmt.Sprintf("%s %03d", strings.Repeat("e", 40), i)
			if err := os.WriteFile(filepath.Join(dir, "staged", name), []byte(fmt.Sprint(i%7)), 0o444); err != nil {
				return err
			}
		}
		return nil
	}
	tree, err := storeTree(t.TempDir(), "0123456789abcdfghijklmnpqrsvwxyz-hostile", fill, plan.Options{StageBytes: 1024, Optimise: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Generate(tree, Options{Merge: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Phases) != 1 || len(s.Merges) == 0 {
		t.Fatalf("%d phases, %d merges: want 1 phase and merges", len(s.Phases), len(s.Merges))
	}
	lines := s.Phases[0]
	inChunk := map[string]string{}  // entry path → chunk
	linked := map[*plan.Node]bool{} // entries whose files have other names
	for _, m := range s.Merges {
		var want, got []ChunkEntry
		for _, c := range m.Dir.Children() {
			if c.Deferred {
				e := ChunkEntry{Name: c.Name, Kind: c.Kind}
				if c.Links > 1 {
					e.Node = c
				}
				want = append(want, e)
			}
		}
		for _, c := range m.Chunks {
			if !strings.HasPrefix(c.Path, "/"+DefaultStaging+"/") || lines[c.Extents] != "ex -l ." {
				t.Errorf("chunk %s: listed by %q", c.Path, lines[c.Extents])
			}
			for _, e := range c.Entries {
				p := m.Dir.Path() + "/" + e.Name
				if _, dup := inChunk[p]; dup {
					t.Errorf("%s in two chunks", p)
				}
				inChunk[p] = c.Path
				if e.Node != nil {
					linked[e.Node] = true
				}
			}
			got = append(got, c.Entries...)
		}
		if len(want) == 0 || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: chunks hold %d entries, %d deferred (or in another order)", m.Dir.Path(), len(got), len(want))
		}
		if lines[m.Extents] != "ex -l ." {
			t.Errorf("%s: listed by %q", m.Dir.Path(), lines[m.Extents])
		}
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "ln ") && strings.HasSuffix(l, " .") {
			t.Errorf("an entry linked in one by one: %q", l)
		}
	}

	from := make([]uint64, len(s.Merges))
	blocks := make([]uint64, len(s.Merges))
	for i := range s.Merges {
		from[i], blocks[i] = 2, 3
	}
	ino := map[*plan.Node]uint64{}
	next := uint64(100)
	for n := range linked {
		ino[n], next = next, next+1
	}
	remove, grow, exLines, err := MergeLines(tree, s, from, blocks, func(n *plan.Node) uint64 { return ino[n] })
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(remove, "\n") + "\n"
	if strings.Contains(text, "fallocate") {
		t.Errorf("blocks allocated in the run that frees the staging directory's:\n%s", text)
	}
	for _, m := range s.Merges {
		for _, c := range m.Chunks {
			seq := fmt.Sprintf("sif %s links_count 0\nkill_file %s\nunlink %s\n", c.Path, c.Path, c.Path)
			if !strings.Contains(text, seq) {
				t.Errorf("chunk %s not removed as %q", c.Path, seq)
			}
		}
	}
	if !strings.Contains(text, "rmdir /"+DefaultStaging+"\n") || len(exLines) != len(s.Merges) {
		t.Errorf("staging directory not removed, or %d listings for %d merges:\n%s", len(exLines), len(s.Merges), text)
	}
	for _, i := range exLines {
		if grow[i] != "ex -l ." || grow[i-2] != "fallocate . 2 4" || grow[i-1] != "sif . size 20480" {
			t.Errorf("merge lines %q", grow[i-2:i+1])
		}
	}
	byInode := 0
	for _, l := range remove {
		if strings.HasPrefix(l, `sif "<`) && strings.Contains(l, `>" links_count `) {
			byInode++
		}
	}
	if byInode == 0 {
		t.Errorf("no link count of a file in a merged directory set by inode:\n%s", text)
	}
}

// failingWriter fails every write.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestGenerateSpool: with Options.Spool the first phase goes to the
// writer, byte for byte what Bytes(0) gives without it, and every line
// number in the script (bulk files, merges) is the same; a writer that
// fails fails the generation.
func TestGenerateSpool(t *testing.T) {
	fill := func(dir string) error {
		if err := hostileFill(dir); err != nil {
			return err
		}
		for i := 0; i < 300; i++ {
			name := fmt.Sprintf("%s %03d", strings.Repeat("s", 40), i)
			if err := os.WriteFile(filepath.Join(dir, "staged", name), []byte(strings.Repeat(fmt.Sprint(i), 3000)), 0o444); err != nil {
				return err
			}
		}
		return nil
	}
	tree, err := storeTree(t.TempDir(), "0123456789abcdfghijklmnpqrsvwxyz-spool", fill, plan.Options{StageBytes: 1024, BulkBlocks: 2})
	if err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	opts := Options{Merge: true, Empty: func(uint32) (string, error) { return empty, nil }}
	want, err := Generate(tree, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(want.Bulk) == 0 || len(want.Merges) == 0 {
		t.Fatalf("%d bulk files, %d merges: the test needs both", len(want.Bulk), len(want.Merges))
	}
	var spool strings.Builder
	opts.Spool = &spool
	got, err := Generate(tree, opts)
	if err != nil {
		t.Fatal(err)
	}
	if spool.String() != string(want.Bytes(0)) {
		t.Errorf("spooled %d bytes, want the %d of the first phase", spool.Len(), len(want.Bytes(0)))
	}
	if len(got.Phases) != 1 || len(got.Phases[0]) != 0 || got.Spooled != len(want.Phases[0]) || got.Lines() != want.Lines() {
		t.Errorf("spooled script: %d phases, %d lines held, %d spooled, %d in all; want 1, 0, %d, %d",
			len(got.Phases), len(got.Phases[0]), got.Spooled, got.Lines(), len(want.Phases[0]), want.Lines())
	}
	if !reflect.DeepEqual(got.Bulk, want.Bulk) || !reflect.DeepEqual(got.Merges, want.Merges) || got.Writes != want.Writes {
		t.Errorf("spooled script: bulk files, merges or writes differ")
	}

	opts.Spool = failingWriter{}
	if _, err := Generate(tree, opts); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("spool that fails: %v, want its error", err)
	}
}

// TestGenerateStreamed: the script of a streamed tree, whose store paths
// are read while it is written and let go once their lines are, is the
// script of the same tree walked whole.
func TestGenerateStreamed(t *testing.T) {
	root := t.TempDir()
	var paths []string
	for i, fill := range []func(dir string) error{
		func(dir string) error {
			if err := hostileFill(dir); err != nil {
				return err
			}
			for i := 0; i < 300; i++ {
				name := fmt.Sprintf("%s %03d", strings.Repeat("s", 40), i)
				if err := os.WriteFile(filepath.Join(dir, "staged", name), []byte(strings.Repeat(fmt.Sprint(i), 1+i%5*3000)), 0o444); err != nil {
					return err
				}
			}
			return nil
		},
		func(dir string) error { return os.WriteFile(dir, []byte(strings.Repeat("f", 9000)), 0o444) },
		func(dir string) error { return os.Symlink("/nix/store/elsewhere", dir) },
		func(dir string) error { return hostileFill(dir) },
	} {
		sp := fmt.Sprintf("/nix/store/%032d-p", i)
		if err := os.MkdirAll(filepath.Join(root, "nix", "store"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := fill(filepath.Join(root, sp)); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, sp)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	popts := plan.Options{Root: root, StorePaths: paths, StageBytes: 1024, BulkBlocks: 2, DeferSmall: true}
	// describe lists what a script says and names, node pointers aside.
	describe := func(s *Script, tree *plan.Tree) string {
		var b strings.Builder
		for p := range s.Phases {
			b.Write(s.Bytes(p))
			b.WriteString("--\n")
		}
		fmt.Fprintf(&b, "writes %d\n", s.Writes)
		for _, f := range s.Bulk {
			fmt.Fprintf(&b, "bulk %s %d %d %d %v\n", f.Node.Path(), f.Phase, f.Write, f.Extents, f.Node.Data())
		}
		for _, m := range s.Merges {
			fmt.Fprintf(&b, "merge %s %d\n", m.Dir.Path(), m.Extents)
			for _, c := range m.Chunks {
				fmt.Fprintf(&b, " chunk %s %d", c.Path, c.Extents)
				for _, e := range c.Entries {
					fmt.Fprintf(&b, " %q %v %v", m.Dir.Path()+"/"+e.Name, e.Kind, e.Node != nil)
				}
				b.WriteString("\n")
			}
		}
		for _, csum := range []bool{false, true} {
			late, err := Late(tree, csum)
			unpad, uerr := Unpad(tree, csum)
			fmt.Fprintf(&b, "late %q %v\nunpad %q %v\n", late, err, unpad, uerr)
		}
		return b.String()
	}
	for _, merge := range []bool{true, false} {
		opts := Options{Merge: merge, Empty: func(uint32) (string, error) { return empty, nil }}
		walked, err := plan.Walk(context.Background(), popts)
		if err != nil {
			t.Fatal(err)
		}
		want, err := Generate(walked, opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(want.Bulk) == 0 || !walked.HasStaged() {
			t.Fatal("the test needs bulk files and staged directories")
		}
		spill, err := os.Create(filepath.Join(t.TempDir(), "spill"))
		if err != nil {
			t.Fatal(err)
		}
		defer spill.Close()
		streamed, err := plan.Stream(context.Background(), popts, spill)
		if err != nil {
			t.Fatal(err)
		}
		defer streamed.Close()
		got, err := Generate(streamed, opts)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := describe(got, streamed), describe(want, walked); g != w {
			t.Errorf("merge %v: the streamed tree's script differs:\n%s\nwant\n%s", merge, g, w)
		}
		if n := len(streamed.Store.Children()[3].Children()); n != 0 {
			t.Errorf("merge %v: a released store path keeps %d entries in memory", merge, n)
		}
		// The script written, its staged directories' entries go too.
		for _, m := range got.Merges {
			if n := len(m.Dir.Children()); n != 0 {
				t.Errorf("%s keeps %d entries in memory", m.Dir.Path(), n)
			}
		}
		if merge && len(got.Merges) == 0 {
			t.Error("no merge")
		}
	}
}
