package debugfsgen

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/mkext4fs/mkext4fs/pkg/plan"
)

// DefaultStaging is the name of the staging directory made in the image
// root for the entries of staged directories, and removed once they are
// in place.
const DefaultStaging = ".mkext4fs-staging"

// Options tune the script.
type Options struct {
	// Staging is the staging directory's name in the root (DefaultStaging
	// when empty); it must not be the name of an entry of the root.
	Staging string
	// Empty returns the host path of an empty regular file with the given
	// permission bits. It is needed when the tree has Bulk files.
	Empty func(perm uint32) (string, error)
	// Merge makes the deferred entries of staged directories in chunk
	// directories of the staging directory, in the first phase, for the
	// caller to merge into their directories (Script.Merges, MergeLines).
	// Without it a second phase links them in one by one: three commands
	// an entry, and a script that makes the image by itself.
	Merge bool
	// Spool, when set, receives the first phase's lines, each ending in
	// a newline, instead of Script.Phases[0] (which is then empty): a
	// large closure's script need not be held in memory.
	Spool io.Writer
}

// Merge is a staged directory whose deferred entries the first phase made
// in chunk directories (plan.Chunks). The caller reads the chunks' entries
// out of the image and writes them into new blocks of the directory.
type Merge struct {
	Dir *plan.Node
	// Extents indexes, in the first phase, the "ex -l" command that lists
	// the directory's blocks once its other entries are made.
	Extents int
	Chunks  []Chunk
}

// Chunk is a chunk directory and the entries made in it, in order.
type Chunk struct {
	Path    string
	Entries []ChunkEntry
	// Extents indexes the "ex -l" command that lists its blocks.
	Extents int
}

// ChunkEntry is an entry made in a chunk directory, as much of it as the
// merge needs: a streamed tree lets the staged directory's nodes go once
// the script is written (plan.Tree.ReleaseStaged).
type ChunkEntry struct {
	Name string
	Kind plan.Kind
	// Node is the entry's node when other names link to its file
	// (Links > 1); nil otherwise.
	Node *plan.Node
}

// BulkFile is a Bulk file of the tree as the script leaves it: created
// from an empty file, its blocks allocated by fallocate (uninitialised
// extents, which read as zeros) and its size set. The caller copies the
// content into the blocks the "ex -l" command reports, then runs
// MarkInitialized's commands in a later debugfs.
type BulkFile struct {
	Node *plan.Node
	// Phase is the index of the phase that creates it; Write and Extents
	// index, in that phase, the write command (which reports the inode)
	// and the ex command (which lists the extents).
	Phase, Write, Extents int
}

// Script is the generated debugfs input, in phases run by separate debugfs
// processes with e2fsck -fyD between them.
type Script struct {
	// Phases hold the command lines, without newlines.
	Phases [][]string
	// Spooled is the number of lines written to Options.Spool: the first
	// phase's.
	Spooled int
	// Writes counts the write commands (each prints "Allocated inode: N").
	Writes int
	// Bulk lists the Bulk files in script order.
	Bulk []BulkFile
	// Merges lists the staged directories to merge, under Options.Merge.
	Merges []Merge
}

// Bytes returns a phase as debugfs reads it.
func (s *Script) Bytes(phase int) []byte {
	var n int
	for _, l := range s.Phases[phase] {
		n += len(l) + 1
	}
	b := make([]byte, 0, n)
	for _, l := range s.Phases[phase] {
		b = append(b, l...)
		b = append(b, '\n')
	}
	return b
}

// Lines is the number of command lines in all phases.
func (s *Script) Lines() int {
	n := s.Spooled
	for _, p := range s.Phases {
		n += len(p)
	}
	return n
}

type gen struct {
	// cur is the entry the commands are being written for; errors name it.
	cur   *plan.Node
	lines []string
	// spool takes the lines instead of lines, when set; spooled counts
	// them and spoolErr is its first error.
	spool    *bufio.Writer
	spooled  int
	spoolErr error
	hostCwd  string
	staging  string
	// tree is the tree the script is for, store its store directory.
	tree  *plan.Tree
	store *plan.Node
	// stagedDirs lists the staged directories the first phase made, in
	// the order of plan.Tree.Walk (a streamed tree keeps them, and their
	// entries, but not always the way to them).
	stagedDirs []*plan.Node
	// made holds where the first phase made the files of chunk
	// directories that hard links are made to.
	made   map[*plan.Node]string
	writes int
	empty  func(perm uint32) (string, error)
	phase  int
	bulk   []BulkFile
	err    error
}

// Generate writes the script that populates an image, freshly made by
// mkfs, with the tree. Its first line runs in the root directory. A
// streamed tree (plan.Stream) is taken in order and let go of as the
// script is written: its store paths with plan.Tree.Await and Release,
// their staged directories' entries with ReleaseStaged at the end.
func Generate(t *plan.Tree, opts Options) (*Script, error) {
	staging := opts.Staging
	if staging == "" {
		staging = DefaultStaging
	}
	if t.Root.Child(staging) != nil {
		return nil, fmt.Errorf("the image root has an entry called %q, the name of the staging directory", staging)
	}
	g := &gen{staging: "/" + staging, empty: opts.Empty, tree: t, store: t.Store}
	if opts.Spool != nil {
		g.spool = bufio.NewWriterSize(opts.Spool, 256<<10)
	}
	// The root exists; give it its mode and owner.
	g.attrs(".", t.Root, true)
	if t.Root.Stage {
		g.stagedDirs = append(g.stagedDirs, t.Root)
	}
	g.dir(t.Root)
	g.cur = nil
	g.cmd("cd", "/")
	var merges []Merge
	if opts.Merge && len(g.stagedDirs) > 0 {
		merges = g.chunked()
	}
	g.linkCounts(t, false, (*plan.Node).Path)
	if g.spool != nil && g.err == nil && g.spoolErr == nil {
		g.spoolErr = g.spool.Flush()
	}
	if g.err != nil {
		return nil, g.err
	}
	if g.spoolErr != nil {
		return nil, fmt.Errorf("write the script: %w", g.spoolErr)
	}
	s := &Script{Phases: [][]string{g.lines}, Spooled: g.spooled, Merges: merges}
	// Each phase is a new debugfs, in the directory it was started in.
	g.lines, g.hostCwd, g.phase, g.spool = nil, "", 1, nil
	if !opts.Merge && len(g.stagedDirs) > 0 {
		g.cmd("cd", "/")
		g.cmd("mkdir", staging)
		for _, n := range g.stagedDirs {
			if g.err != nil {
				break
			}
			g.staged(n)
		}
		g.cur = nil
		g.cmd("cd", "/")
		g.cmd("rmdir", g.staging)
		g.linkCounts(t, true, (*plan.Node).Path)
	}
	if g.err != nil {
		return nil, g.err
	}
	if len(g.lines) > 0 {
		s.Phases = append(s.Phases, g.lines)
	}
	s.Writes = g.writes
	s.Bulk = g.bulk
	// The merges need only what Chunk keeps of the entries.
	for _, n := range g.stagedDirs {
		t.ReleaseStaged(n)
	}
	return s, nil
}

// Late returns the commands run by themselves after the other phases: they
// write the tree's Late files (whose Host must be set by now) and, when
// checksums are to be added, the entries that pad directories for e2fsck
// to index (plan.PadName; Unpad removes them).
func Late(t *plan.Tree, csum bool) ([]string, error) {
	g := &gen{}
	for _, p := range t.Pads(csum) {
		g.cmd("symlink", p.Dir+"/"+p.Name, "pad")
	}
	t.Walk(func(n *plan.Node) bool {
		if !n.Late || g.err != nil {
			return g.err == nil
		}
		g.cur = n
		g.checkName(n)
		if n.Host() == "" {
			g.fail(n, fmt.Errorf("no content to write"))
			return false
		}
		g.chdir("cd", n.Parent().Path())
		g.write(n, n.Name)
		g.attrs(ref(n.Name), n, true)
		return true
	})
	return g.lines, g.err
}

// cmd appends one command line; the first error sticks.
func (g *gen) cmd(name string, args ...string) {
	if g.err != nil {
		return
	}
	var buf [8]string
	quoted := buf[:0]
	size := len(name)
	for _, a := range args {
		q, err := Quote(a)
		if err != nil {
			if g.cur != nil {
				g.fail(g.cur, err)
			} else {
				g.err = err
			}
			return
		}
		quoted = append(quoted, q)
		size += 1 + len(q)
	}
	if size > MaxLine {
		err := fmt.Errorf("its %s command would take %d bytes: %w (debugfs reads lines of at most %d bytes)", name, size, ErrUnquotable, MaxLine)
		if g.cur != nil {
			g.fail(g.cur, err)
		} else {
			g.err = err
		}
		return
	}
	if g.spool != nil {
		g.spooled++
		if g.spoolErr == nil {
			writeLine(g.spool, name, quoted)
			g.spoolErr = g.spool.WriteByte('\n')
		}
		return
	}
	var b strings.Builder
	b.Grow(size)
	writeLine(&b, name, quoted)
	g.lines = append(g.lines, b.String())
}

// writeLine writes a command line, without its newline: the command name
// and the quoted arguments, separated by blanks. A bufio.Writer keeps its
// first error, which the caller reads from its last write; a
// strings.Builder has none.
func writeLine(w interface {
	WriteString(string) (int, error)
	WriteByte(byte) error
}, name string, quoted []string) {
	w.WriteString(name)
	for _, q := range quoted {
		w.WriteByte(' ')
		w.WriteString(q)
	}
}

// line is the index in its phase of the next line.
func (g *gen) line() int { return g.spooled + len(g.lines) }

// fail records an error about node n.
func (g *gen) fail(n *plan.Node, err error) {
	if g.err != nil {
		return
	}
	where := n.Path()
	if sp := n.StorePath(); sp != "" {
		where = fmt.Sprintf("%s (store path %s)", where, sp)
	}
	g.err = fmt.Errorf("%s: %w", where, err)
}

// ref makes a name safe where debugfs takes an inode: "<12>" would be read
// as inode 12, "./<12>" is the name.
func ref(name string) string { return "./" + name }

// attrs sets mode and owner of the inode called name in the current
// directory (which includes "." for the directory itself).
func (g *gen) attrs(name string, n *plan.Node, setMode bool) {
	if setMode {
		g.cmd("sif", name, "mode", fmt.Sprintf("0%o", typeBits(n.Kind)|n.Perm))
	}
	if n.UID != 0 {
		g.cmd("sif", name, "uid", fmt.Sprint(n.UID))
	}
	if n.GID != 0 {
		g.cmd("sif", name, "gid", fmt.Sprint(n.GID))
	}
}

func typeBits(k plan.Kind) uint32 {
	switch k {
	case plan.Dir:
		return 0o040000
	case plan.Symlink:
		return 0o120000
	}
	return 0o100000
}

// dir populates directory n, which is the current directory, in the first
// phase.
func (g *gen) dir(n *plan.Node) {
	for _, c := range n.Children() {
		if g.err != nil {
			return
		}
		if n != g.store {
			g.entry(c)
			continue
		}
		// A streamed tree reads the store paths while the script is
		// written, and lets each go once its lines are (those of the
		// deferred entries of staged directories come after all of
		// them, from what the tree keeps of those).
		var err error
		if c, err = g.tree.Await(c); err != nil {
			g.err = err
			return
		}
		g.entry(c)
		if g.err == nil {
			if err := g.tree.Release(c); err != nil {
				g.err = err
			}
		}
	}
}

// entry makes c, an entry of the current directory, in the first phase.
func (g *gen) entry(c *plan.Node) {
	if c.Deferred || c.Late {
		return
	}
	g.cur = c
	g.checkName(c)
	switch c.Kind {
	case plan.Dir:
		g.cmd("mkdir", c.Name)
		g.cmd("cd", ref(c.Name))
		g.attrs(".", c, true)
		if c.Stage {
			g.stagedDirs = append(g.stagedDirs, c)
		}
		g.dir(c)
		g.cur = c
		g.cmd("cd", "..")
	case plan.File:
		if p := c.Primary(); p != nil {
			g.hardLink(p.Path(), c.Name)
			return
		}
		g.file(c, c.Name, ref(c.Name))
		g.attrs(ref(c.Name), c, false)
	case plan.Symlink:
		g.symlink(c, c.Name)
		g.attrs(ref(c.Name), c, false)
	}
}

// checkName refuses names debugfs cannot carry before any command uses
// them, so that the error names the entry.
func (g *gen) checkName(n *plan.Node) {
	if _, err := Quote(n.Name); err != nil {
		g.fail(n, fmt.Errorf("name %w", err))
	}
	if n.Kind == plan.Symlink {
		target := n.Target()
		if target == "" {
			g.fail(n, fmt.Errorf("symlink with an empty target"))
		} else if _, err := Quote(target); err != nil {
			g.fail(n, fmt.Errorf("symlink target %w", err))
		} else if len(target) >= plan.BlockSize {
			g.fail(n, fmt.Errorf("symlink target of %d bytes: ext4 holds at most %d", len(target), plan.BlockSize-1))
		}
	}
}

// write copies n's host file to dest (relative to the image's current
// directory, or absolute).
func (g *gen) write(n *plan.Node, dest string) {
	dir, base, ok := n.HostIn()
	if !ok {
		dir, base = path.Dir(n.Host()), path.Base(n.Host())
	}
	g.lcd(dir)
	g.cmd("write", base, dest)
	g.writes++
}

// file creates regular file n as dest; ref names it in commands that take
// an inode.
func (g *gen) file(n *plan.Node, dest, ref string) {
	if !n.Bulk {
		g.write(n, dest)
		return
	}
	if g.empty == nil {
		g.fail(n, fmt.Errorf("a bulk file, and no empty file to create it from"))
		return
	}
	empty, err := g.empty(n.Perm)
	if err != nil {
		g.fail(n, err)
		return
	}
	data := n.Data()
	if len(data) == 0 {
		g.fail(n, fmt.Errorf("a bulk file without data"))
		return
	}
	b := BulkFile{Node: n, Phase: g.phase, Write: g.line()}
	g.cmd("write", empty, dest)
	g.writes++
	if len(data) == 1 {
		r := data[0]
		g.cmd("fallocate", ref, fmt.Sprint(r[0]), fmt.Sprint(r[0]+r[1]-1))
	} else {
		// Several runs: fallocate would put each as far from the one
		// before on disk as it is in the file, and the gaps would cut
		// the files made later into more extents. Allocate the runs'
		// blocks one after the other from block 0 on; Place moves them
		// to their places in the file.
		g.cmd("fallocate", ref, "0", fmt.Sprint(n.Blocks-1))
	}
	g.cmd("sif", ref, "size", fmt.Sprint(n.Size))
	b.Extents = g.line()
	g.cmd("ex", "-l", ref)
	if g.err == nil {
		g.bulk = append(g.bulk, b)
	}
}

// Extent maps Len blocks of a file from block Logical on to the image's
// blocks from Physical on.
type Extent struct {
	Logical, Physical, Len uint64
	// Uninit marks an uninitialised extent, which reads as zeros.
	Uninit bool
	// Slot is the extent's place in the inode's own array of four when
	// the extent tree is that array alone, -1 otherwise.
	Slot int
}

// blockField names the 32-bit word i of an inode's i_block for sif.
func blockField(i int) string {
	switch i {
	case 12:
		return "block[IND]"
	case 13:
		return "block[DIND]"
	case 14:
		return "block[TIND]"
	}
	return fmt.Sprintf("block[%d]", i)
}

// MarkInitialized returns the commands that mark the extents of inode ino
// initialised once the content is in their blocks. Extents held in the
// inode itself are marked by rewriting the word that holds their length
// (the length plus 32768 marks an uninitialised extent) next to the high
// 16 bits of their first block; others by Place, each extent replaced by
// itself.
func MarkInitialized(ino uint64, extents []Extent) ([]string, error) {
	inInode := true
	for _, e := range extents {
		if e.Uninit && (e.Slot < 0 || e.Slot > 3 || e.Len == 0 || e.Len > 32767) {
			inInode = false
		}
	}
	if !inInode {
		return Place(ino, extents, extents)
	}
	var lines []string
	for _, e := range extents {
		if e.Uninit {
			// ee_block, then ee_len | ee_start_hi << 16, then
			// ee_start_lo, after the 12-byte header.
			word := e.Len | (e.Physical>>32)<<16
			lines = append(lines, fmt.Sprintf("sif <%d> %s %d", ino, blockField(3+3*e.Slot+1), word))
		}
	}
	return lines, nil
}

// Place returns the commands that give inode ino, whose extents are have
// (from fallocate, uninitialised; for a file of several runs, the runs'
// blocks one after the other from block 0), the extents want, initialised:
// the same blocks, at the runs' places in the file. Each of want's extents lies in one of have's, in
// order. The extents are rewritten from the last to the first, so that
// every extent not yet rewritten keeps its block numbers and lies before
// the rewritten ones; no extent is deleted, so no tree block is freed.
func Place(ino uint64, have, want []Extent) ([]string, error) {
	lines := []string{fmt.Sprintf("extent_open <%d>", ino)}
	w := len(want)
	for h := len(have) - 1; h >= 0; h-- {
		e := have[h]
		// want[first:w] are the pieces of e.
		first, blocks := w, uint64(0)
		for first > 0 && blocks < e.Len {
			first--
			blocks += want[first].Len
		}
		if blocks != e.Len || want[first].Physical != e.Physical {
			return nil, fmt.Errorf("inode %d: extents %+v do not split into %+v", ino, have, want)
		}
		for k := first + 1; k < w; k++ {
			if want[k].Physical != want[k-1].Physical+want[k-1].Len || want[k].Logical < want[k-1].Logical+want[k-1].Len {
				return nil, fmt.Errorf("inode %d: extents %+v do not split into %+v", ino, have, want)
			}
		}
		lines = append(lines,
			fmt.Sprintf("goto_block %d", e.Logical),
			fmt.Sprintf("replace_node %d %d %d", want[first].Logical, want[first].Len, want[first].Physical),
			"fix_parents")
		for k := first + 1; k < w; k++ {
			lines = append(lines, fmt.Sprintf("insert_node --after %d %d %d", want[k].Logical, want[k].Len, want[k].Physical))
		}
		w = first
	}
	if w != 0 {
		return nil, fmt.Errorf("inode %d: extents %+v do not split into %+v", ino, have, want)
	}
	return append(lines, "extent_close"), nil
}

func (g *gen) symlink(n *plan.Node, dest string) {
	g.cmd("symlink", dest, n.Target())
}

// lcd changes debugfs' working directory on the host to dir (absolute).
// A path whose command would not fit one line is entered in steps.
func (g *gen) lcd(dir string) {
	if dir == g.hostCwd || g.err != nil {
		return
	}
	g.chdir("lcd", dir)
	g.hostCwd = dir
}

// chdir emits cmd (cd or lcd) commands that enter the absolute path p.
func (g *gen) chdir(cmd, p string) {
	if q, err := Quote(p); err == nil && len(cmd)+1+len(q) <= MaxLine {
		g.cmd(cmd, p)
		return
	}
	g.cmd(cmd, "/")
	var part []string
	size := 0
	flush := func() {
		if len(part) > 0 {
			g.cmd(cmd, strings.Join(part, "/"))
			part, size = nil, 0
		}
	}
	for _, comp := range strings.Split(strings.Trim(p, "/"), "/") {
		q, err := Quote(comp)
		if err != nil {
			g.err = fmt.Errorf("%s: %w", p, err)
			return
		}
		if size+len(q)+1 > MaxLine/2 {
			flush()
		}
		if len(part) == 0 && strings.HasPrefix(comp, "<") {
			comp = "./" + comp
		}
		part = append(part, comp)
		size += len(q) + 1
	}
	flush()
}

// staged creates the deferred entries of a staged directory in the second
// phase: each is made in the staging directory, linked into the indexed
// directory and unlinked from the staging one.
func (g *gen) staged(n *plan.Node) {
	g.cur = n
	g.chdir("cd", n.Path())
	for _, c := range n.Children() {
		if g.err != nil {
			return
		}
		if !c.Deferred {
			continue
		}
		g.cur = c
		g.checkName(c)
		tmp := g.staging + "/" + c.Name
		g.deferred(c, tmp, tmp)
		g.cmd("ln", tmp, ".")
		g.cmd("unlink", tmp)
	}
}

// deferred makes the deferred entry c as dest; ref names it in commands
// that take an inode.
func (g *gen) deferred(c *plan.Node, dest, ref string) {
	switch p := c.Primary(); {
	case c.Kind == plan.File && p != nil:
		g.cmd("ln", g.pathOf(p), dest)
	case c.Kind == plan.File:
		g.file(c, dest, ref)
		g.attrs(ref, c, false)
	case c.Kind == plan.Symlink:
		g.symlink(c, dest)
		g.attrs(ref, c, false)
	default:
		g.fail(c, fmt.Errorf("a %s cannot be staged", c.Kind))
	}
}

// hardLink links src as name in the current directory. debugfs' ln does
// not grow a full directory: a placeholder made and removed first leaves
// room for the name.
func (g *gen) hardLink(src, name string) {
	g.cmd("symlink", name, "x")
	g.cmd("rm", ref(name))
	g.cmd("ln", src, name)
}

// pathOf is where n is in the image while the script runs: in its chunk
// directory until it is merged.
func (g *gen) pathOf(n *plan.Node) string {
	if p, ok := g.made[n]; ok {
		return p
	}
	return n.Path()
}

// chunked makes, in the first phase, the deferred entries of every staged
// directory in chunk directories of the staging directory, and lists the
// blocks of the chunks and of the directory for the caller to merge.
func (g *gen) chunked() []Merge {
	g.made = map[*plan.Node]string{}
	var merges []Merge
	k := 0
	for _, n := range g.stagedDirs {
		if g.err != nil {
			break
		}
		chunks := plan.Chunks(n)
		if len(chunks) == 0 {
			continue // only subdirectories: nothing deferred
		}
		if merges == nil {
			g.cmd("mkdir", g.staging)
		}
		m := Merge{Dir: n}
		for _, entries := range chunks {
			c := Chunk{Path: fmt.Sprintf("%s/%d", g.staging, k), Entries: make([]ChunkEntry, len(entries))}
			k++
			g.cur = n
			g.cmd("mkdir", c.Path)
			g.cmd("cd", c.Path)
			for i, e := range entries {
				c.Entries[i] = ChunkEntry{Name: e.Name, Kind: e.Kind}
				if e.Links > 1 {
					c.Entries[i].Node = e
				}
				g.cur = e
				g.checkName(e)
				if p := e.Primary(); e.Kind == plan.File && p != nil {
					g.hardLink(g.pathOf(p), e.Name)
				} else {
					g.deferred(e, e.Name, ref(e.Name))
				}
				if e.Links > 1 { // a file other names link to
					g.made[e] = c.Path + "/" + e.Name
				}
			}
			g.cur = n
			c.Extents = g.line()
			g.cmd("ex", "-l", ".")
			m.Chunks = append(m.Chunks, c)
		}
		g.chdir("cd", n.Path())
		m.Extents = g.line()
		g.cmd("ex", "-l", ".")
		merges = append(merges, m)
	}
	g.cur = nil
	g.cmd("cd", "/")
	return merges
}

// MergeLines returns the two debugfs runs that end the merges of s, after
// the caller read the chunks' entries. remove deletes the chunk
// directories and the staging directory (not the entries' inodes: their
// names go into the blocks the caller writes) and sets the link counts of
// files with several names, naming those made in chunks by their inode,
// ino. grow gives every merged directory blocks from its block from[i]
// on, blocks[i] of them (fallocate: uninitialised until the caller's
// content is in them and MarkInitialized ran), sets its size and lists
// the blocks (exLines[i] indexes that "ex -l" command). They are separate
// runs because debugfs writes the blocks it changed when it exits: had the
// staging directory's block, freed by the first, been given to a merged
// directory by the same process, the caller's content would be
// overwritten.
func MergeLines(t *plan.Tree, s *Script, from, blocks []uint64, ino func(*plan.Node) uint64) (remove, grow []string, exLines []int, err error) {
	g := &gen{}
	staging := ""
	merged := map[*plan.Node]bool{}
	for _, m := range s.Merges {
		for _, c := range m.Chunks {
			// kill_file frees the inode and its blocks, and leaves
			// its link count, which e2fsck would take for a use.
			g.cur = m.Dir
			g.cmd("sif", c.Path, "links_count", "0")
			g.cmd("kill_file", c.Path)
			g.cmd("unlink", c.Path)
			staging = path.Dir(c.Path)
			for _, e := range c.Entries {
				if e.Node != nil {
					merged[e.Node] = true
				}
			}
		}
	}
	if staging != "" {
		g.cur = nil
		g.cmd("rmdir", staging)
	}
	g.linkCounts(t, true, func(n *plan.Node) string {
		if merged[n] {
			return fmt.Sprintf("<%d>", ino(n))
		}
		return n.Path()
	})
	remove, g.lines = g.lines, nil
	for i, m := range s.Merges {
		if blocks[i] == 0 {
			return nil, nil, nil, fmt.Errorf("%s: nothing to merge", m.Dir.Path())
		}
		g.cur = m.Dir
		g.chdir("cd", m.Dir.Path())
		g.cmd("fallocate", ".", fmt.Sprint(from[i]), fmt.Sprint(from[i]+blocks[i]-1))
		g.cmd("sif", ".", "size", fmt.Sprint((from[i]+blocks[i])*plan.BlockSize))
		exLines = append(exLines, len(g.lines))
		g.cmd("ex", "-l", ".")
	}
	g.cur = nil
	g.cmd("cd", "/")
	if g.err != nil {
		return nil, nil, nil, g.err
	}
	return remove, g.lines, exLines, nil
}

// linkCounts gives files with several names their link count as it is at
// the end of a phase (debugfs' ln adds a name without counting it, and the
// e2fsck between the phases must find the counts right).
func (g *gen) linkCounts(t *plan.Tree, final bool, name func(*plan.Node) string) {
	if !t.HardLinks() {
		return
	}
	names := map[*plan.Node]int{}
	var order []*plan.Node
	t.Walk(func(n *plan.Node) bool {
		if n.Kind != plan.File || (!final && n.Deferred) {
			return true
		}
		p := n
		if pr := n.Primary(); pr != nil {
			p = pr
		}
		if p.Links > 1 {
			if names[p] == 0 {
				order = append(order, p)
			}
			names[p]++
		}
		return true
	})
	for _, p := range order {
		if names[p] > 1 {
			g.cur = p
			g.cmd("sif", name(p), "links_count", fmt.Sprint(names[p]))
		}
	}
}

// Unpad returns the commands that remove the padding entries Late made.
func Unpad(t *plan.Tree, csum bool) ([]string, error) {
	g := &gen{}
	for _, p := range t.Pads(csum) {
		g.cmd("rm", p.Dir+"/"+p.Name)
	}
	return g.lines, g.err
}
