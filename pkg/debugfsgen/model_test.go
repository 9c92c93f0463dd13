package debugfsgen

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/mkext4fs/mkext4fs/pkg/plan"
	"golang.org/x/sys/unix"
)

// This file is a model of the debugfs commands the scripts use, written
// from e2fsprogs 1.47.0's debugfs.c, util.c and misc/create_inode.c. It
// runs a script on an in-memory tree, taking every argument from Split,
// so that a test can compare what the script would build with the plan.
// Where debugfs would read an argument in a way the generator never means
// (an inode number, a symlink followed inside the image, a name that
// exists already) the model stops with an error.

type mnode struct {
	kind     plan.Kind
	mode     uint32 // with the type bits; as debugfs sets it
	uid, gid uint32
	host     string // a file's source on the host
	target   string
	links    int // links_count set by sif (0: never set)
	parent   *mnode
	children map[string]*mnode
}

type machine struct {
	root, cwd *mnode
	hostCwd   string // "" until the first absolute lcd
}

func newMachine() *machine {
	root := &mnode{kind: plan.Dir, mode: 0o40755, children: map[string]*mnode{}}
	root.parent = root
	return &machine{root: root, cwd: root}
}

// inodeArg reports whether string_to_inode would read s as an inode number:
// "<N>" where strtoul(…, 0) parses all of N. The model is stricter than
// strtoul (it also takes Go's 0b/0o prefixes and underscores).
func inodeArg(s string) bool {
	if len(s) <= 2 || s[0] != '<' || s[len(s)-1] != '>' {
		return false
	}
	inner := strings.TrimLeft(s[1:len(s)-1], " \t\n\v\f\r")
	inner = strings.TrimPrefix(strings.TrimPrefix(inner, "+"), "-")
	_, err := strconv.ParseUint(inner, 0, 64)
	return err == nil
}

// namei resolves a path in the image as ext2fs_namei does, without
// following a symlink anywhere (the generator never needs it to).
func (m *machine) namei(p string) (*mnode, error) {
	cur := m.cwd
	if strings.HasPrefix(p, "/") {
		cur = m.root
	}
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "", ".":
			continue
		case "..":
			cur = cur.parent
			continue
		}
		if cur.kind != plan.Dir {
			return nil, fmt.Errorf("%q: a %s in the middle of the path", p, cur.kind)
		}
		next := cur.children[c]
		if next == nil {
			return nil, fmt.Errorf("%q: no entry %q", p, c)
		}
		cur = next
	}
	return cur, nil
}

// stringToInode is debugfs' string_to_inode.
func (m *machine) stringToInode(s string) (*mnode, error) {
	if inodeArg(s) {
		return nil, fmt.Errorf("%q would be read as an inode number", s)
	}
	return m.namei(s)
}

// parentOf splits a destination the way do_write_internal, do_mkdir_internal
// and do_symlink_internal do: at the last '/', the head looked up with
// namei.
func (m *machine) parentOf(dest string) (*mnode, string, error) {
	i := strings.LastIndexByte(dest, '/')
	if i < 0 {
		return m.cwd, dest, nil
	}
	dir, err := m.namei(dest[:i])
	if err != nil {
		return nil, "", err
	}
	return dir, dest[i+1:], nil
}

func (m *machine) link(dir *mnode, name string, n *mnode) error {
	if dir.kind != plan.Dir {
		return fmt.Errorf("link %q into a %s", name, dir.kind)
	}
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("bad name %q", name)
	}
	if dir.children[name] != nil {
		return fmt.Errorf("%q exists already", name)
	}
	dir.children[name] = n
	if n.kind == plan.Dir {
		n.parent = dir
	}
	return nil
}

// exec runs one script line.
func (m *machine) exec(line string) error {
	if strings.ContainsAny(line, "\n\r\x00") {
		return fmt.Errorf("line holds a line end or NUL")
	}
	if len(line) > MaxLine {
		return fmt.Errorf("line of %d bytes", len(line))
	}
	if t := strings.TrimLeft(line, " \t"); strings.HasPrefix(t, "#") || strings.HasPrefix(t, "!") {
		return fmt.Errorf("comment or shell escape")
	}
	args, err := Split(line)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		return fmt.Errorf("empty line")
	}
	nargs := map[string]int{"cd": 2, "lcd": 2, "mkdir": 2, "write": 3, "symlink": 3, "sif": 4, "ln": 3, "unlink": 2, "rmdir": 2, "rm": 2}
	if want, ok := nargs[args[0]]; !ok || len(args) != want {
		return fmt.Errorf("command %q with %d arguments", args[0], len(args)-1)
	}
	switch args[0] {
	case "cd":
		n, err := m.stringToInode(args[1])
		if err != nil {
			return err
		}
		if n.kind != plan.Dir {
			return fmt.Errorf("cd into a %s", n.kind)
		}
		m.cwd = n
	case "lcd":
		switch {
		case strings.HasPrefix(args[1], "/"):
			m.hostCwd = path.Clean(args[1])
		case m.hostCwd == "":
			return fmt.Errorf("relative lcd %q from an unknown directory", args[1])
		default:
			m.hostCwd = path.Join(m.hostCwd, args[1])
		}
	case "mkdir":
		dir, name, err := m.parentOf(args[1])
		if err != nil {
			return err
		}
		return m.link(dir, name, &mnode{kind: plan.Dir, mode: 0o40755, children: map[string]*mnode{}})
	case "write":
		src := args[1]
		if !strings.HasPrefix(src, "/") {
			if m.hostCwd == "" {
				return fmt.Errorf("write %q from an unknown directory", src)
			}
			src = path.Join(m.hostCwd, src)
		}
		var st unix.Stat_t
		if err := unix.Stat(src, &st); err != nil {
			return fmt.Errorf("write: %s: %w", src, err)
		}
		dir, name, err := m.parentOf(args[2])
		if err != nil {
			return err
		}
		return m.link(dir, name, &mnode{kind: plan.File, mode: 0o100000 | st.Mode&0o7777, host: src})
	case "symlink":
		dir, name, err := m.parentOf(args[1])
		if err != nil {
			return err
		}
		return m.link(dir, name, &mnode{kind: plan.Symlink, mode: 0o120777, target: args[2]})
	case "sif":
		n, err := m.stringToInode(args[1])
		if err != nil {
			return err
		}
		v, err := strconv.ParseUint(args[3], 0, 32)
		if err != nil {
			return fmt.Errorf("sif value %q: %w", args[3], err)
		}
		switch args[2] {
		case "mode":
			n.mode = uint32(v)
		case "uid":
			n.uid = uint32(v)
		case "gid":
			n.gid = uint32(v)
		case "links_count":
			n.links = int(v)
		default:
			return fmt.Errorf("sif field %q", args[2])
		}
	case "ln":
		src, err := m.stringToInode(args[1])
		if err != nil {
			return err
		}
		base := args[1][strings.LastIndexByte(args[1], '/')+1:]
		dest := args[2]
		if dir, err := m.namei(dest); err == nil {
			return m.link(dir, base, src)
		}
		dir, name := m.cwd, dest
		if i := strings.LastIndexByte(dest, '/'); i >= 0 {
			if dir, err = m.stringToInode(dest[:i]); err != nil {
				return err
			}
			name = dest[i+1:]
		}
		return m.link(dir, name, src)
	case "unlink":
		return m.unlink(args[1])
	case "rm":
		n, err := m.namei(args[1])
		if err != nil {
			return err
		}
		if n.kind == plan.Dir {
			return fmt.Errorf("rm of a directory")
		}
		return m.unlink(args[1])
	case "rmdir":
		n, err := m.namei(args[1])
		if err != nil {
			return err
		}
		if n.kind != plan.Dir || len(n.children) > 0 {
			return fmt.Errorf("rmdir of a non-empty directory or a %s", n.kind)
		}
		return m.unlink(args[1])
	}
	return nil
}

// unlink is unlink_file_by_name.
func (m *machine) unlink(p string) error {
	dir, name := m.cwd, p
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		// "/x" looks "" up, which is the current directory, not the
		// root: debugfs cuts the name before the '/'.
		var err error
		if dir, err = m.stringToInode(p[:i]); err != nil {
			return err
		}
		name = p[i+1:]
	}
	if dir.children[name] == nil {
		return fmt.Errorf("unlink %q: no such entry", p)
	}
	delete(dir.children, name)
	return nil
}

// run runs every line, in phases that each start a new debugfs.
func (m *machine) run(phases ...[]string) error {
	for i, lines := range phases {
		m.cwd = m.root
		for j, l := range lines {
			if err := m.exec(l); err != nil {
				return fmt.Errorf("phase %d line %d %q: %w", i+1, j+1, l, err)
			}
		}
		// e2fsck runs between the phases: link counts must be right at
		// the end of each.
		if err := m.checkLinks(); err != nil {
			return fmt.Errorf("after phase %d: %w", i+1, err)
		}
	}
	return nil
}

// checkLinks compares the links_count of every file with several names
// with the number of its names.
func (m *machine) checkLinks() error {
	names := map[*mnode]int{}
	var walk func(n *mnode)
	walk = func(n *mnode) {
		for _, c := range n.children {
			names[c]++
			if c.kind == plan.Dir {
				walk(c)
			}
		}
	}
	walk(m.root)
	for n, count := range names {
		if n.kind == plan.File && (count > 1 || n.links > 0) && n.links != count {
			return fmt.Errorf("%q has %d names and links_count %d", n.host, count, n.links)
		}
	}
	return nil
}

// compare lists how the model's tree differs from the plan.
func (m *machine) compare(t *plan.Tree) []string {
	var diffs []string
	add := func(format string, args ...any) {
		if len(diffs) < 20 {
			diffs = append(diffs, fmt.Sprintf(format, args...))
		}
	}
	primary := map[*plan.Node]*mnode{}
	var walk func(p *plan.Node, n *mnode)
	walk = func(p *plan.Node, n *mnode) {
		where := p.Path()
		wantMode := map[plan.Kind]uint32{plan.Dir: 0o40000, plan.File: 0o100000, plan.Symlink: 0o120000}[p.Kind] | p.Perm
		if n.kind != p.Kind {
			add("%q: a %s, want a %s", where, n.kind, p.Kind)
			return
		}
		if n.mode != wantMode {
			add("%q: mode %o, want %o", where, n.mode, wantMode)
		}
		if n.uid != p.UID || n.gid != p.GID {
			add("%q: owner %d:%d, want %d:%d", where, n.uid, n.gid, p.UID, p.GID)
		}
		switch p.Kind {
		case plan.Symlink:
			if n.target != p.Target() {
				add("%q: target %q, want %q", where, n.target, p.Target())
			}
		case plan.File:
			src := p
			if p.Primary() != nil {
				src = p.Primary()
			}
			if n.host != src.Host() {
				add("%q: written from %q, want %q", where, n.host, src.Host())
			}
			if first, ok := primary[src]; ok && first != n {
				add("%q: not the same inode as %q", where, src.Path())
			}
			primary[src] = n
		case plan.Dir:
			var got, want []string
			for name := range n.children {
				got = append(got, name)
			}
			for _, c := range p.Children() {
				want = append(want, c.Name)
			}
			sort.Strings(got)
			if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
				add("%q: entries %q, want %q", where, got, want)
				return
			}
			for _, c := range p.Children() {
				walk(c, n.children[c.Name])
			}
		}
	}
	walk(t.Root, m.root)
	return diffs
}

// storeTree writes a store path at root/nix/store/<name> with fill and
// returns the plan of it.
func storeTree(root, name string, fill func(dir string) error, opts plan.Options) (*plan.Tree, error) {
	sp := "/nix/store/" + name
	if err := os.MkdirAll(filepath.Join(root, "nix", "store"), 0o755); err != nil {
		return nil, err
	}
	if err := fill(filepath.Join(root, sp)); err != nil {
		return nil, err
	}
	opts.Root, opts.StorePaths = root, []string{sp}
	return plan.Walk(context.Background(), opts)
}
