package plan

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// Kind is the type of an entry in the image.
type Kind uint8

// The kinds of entries an image holds. A Nix store has nothing else: no
// devices, fifos or sockets.
const (
	Dir Kind = iota + 1
	File
	Symlink
)

func (k Kind) String() string {
	switch k {
	case Dir:
		return "directory"
	case File:
		return "file"
	case Symlink:
		return "symlink"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Node is one entry of the image. (Its fields are ordered to pack it
// small: a closure has a node for every name. What only some nodes have
// is in more.)
type Node struct {
	// Name is the entry's name in its parent; "" for the root.
	Name   string
	parent *Node
	more   *nodeMore
	// target is a symlink's target, byte for byte (see Target).
	target *string
	// Size is a regular file's length in bytes.
	Size int64
	// Blocks is the number of 4 KiB blocks the file occupies in the image:
	// debugfs skips holes and blocks that are all zeros.
	Blocks int64
	// Runs is the number of runs of such blocks (each is one extent or more).
	Runs int64
	id   fileID
	// Links is the number of names of a file in the image (1, or more for a
	// Primary under Optimise).
	Links int32
	// Perm holds the permission, set-id and sticky bits (07777).
	Perm     uint32
	UID, GID uint32
	Kind     Kind
	// Stage marks a directory so large that the script links most of its
	// entries in through a small staging directory (see pkg/debugfsgen).
	Stage bool
	// Deferred marks an entry of a staged directory that is not a seed:
	// the script creates it in its second phase.
	Deferred bool
	// Late marks a file whose content is made during the build (the
	// registration): the script writes it in a last phase of its own.
	Late bool
	// Bulk marks a file the script creates empty with all its blocks
	// allocated (uninitialised, reading as zeros) and its size set; the
	// caller copies the content into those blocks and then marks them
	// initialised (see pkg/debugfsgen). Blocks of zeros are left out.
	Bulk bool
	// Estimated marks a file the walk left unread (Options.DeferSmall):
	// Blocks and Runs are upper bounds until Tree.Settle.
	Estimated bool
	flags     nodeFlags
}

// nodeMore is what only some nodes have: directories, bulk files, hard
// links, and entries not read from their parent's host directory.
type nodeMore struct {
	// host is the path the content is read from (see Node.Host), unless
	// the node is marked inDir.
	host     string
	children []*Node
	data     [][2]int64
	primary  *Node
	// digest is the SHA-256 of a file's content, read under Optimise
	// (until the tree is optimised).
	digest *[32]byte
}

// m returns the node's more, made on first use.
func (n *Node) m() *nodeMore {
	if n.more == nil {
		n.more = &nodeMore{}
	}
	return n.more
}

// trimMore drops the node's more when it holds nothing.
func (n *Node) trimMore() {
	if m := n.more; m != nil && m.host == "" && m.children == nil && m.data == nil && m.primary == nil && m.digest == nil {
		n.more = nil
	}
}

// Children of a directory, sorted bytewise by name (in a streamed tree,
// those held in memory).
func (n *Node) Children() []*Node {
	if n.more == nil {
		return nil
	}
	return n.more.children
}

// Target is a symlink's target, byte for byte.
func (n *Node) Target() string {
	if n.target == nil {
		return ""
	}
	return *n.target
}

// Data lists a bulk file's runs of blocks that are not all zeros: the
// first block and the number of blocks of each.
func (n *Node) Data() [][2]int64 {
	if n.more == nil {
		return nil
	}
	return n.more.data
}

// Primary is set, under Optimise, on a file whose content and mode equal
// those of an earlier file: the image stores it as a hard link to Primary.
func (n *Node) Primary() *Node {
	if n.more == nil {
		return nil
	}
	return n.more.primary
}

// host is the path the node keeps (see Host).
func (n *Node) host() string {
	if n.more == nil {
		return ""
	}
	return n.more.host
}

// nodeFlags are a node's unexported marks.
type nodeFlags uint8

const (
	// extra marks a file of Options.Extra.
	extra nodeFlags = 1 << iota
	// inDir marks a walked file or symlink whose host path is its
	// parent's followed by its name: it keeps no copy of it.
	inDir
	// top marks the node of a store path, directly in the store
	// directory.
	top
)

func (n *Node) is(f nodeFlags) bool { return n.flags&f != 0 }

func (n *Node) set(f nodeFlags, on bool) {
	if on {
		n.flags |= f
	} else {
		n.flags &^= f
	}
}

// fileID identifies a host entry as it was when walked, to detect
// changes; a file's size is the node's Size.
type fileID struct {
	dev, ino     uint64
	mtime, ctime int64
	// mode is 0 for a node that was not walked (it has no host file).
	mode, nlink uint32
}

// StorePath is the store path the entry belongs to ("" outside the
// store).
func (n *Node) StorePath() string {
	for p := n; p != nil; p = p.parent {
		if p.is(top) {
			return p.parent.Path() + "/" + p.Name
		}
	}
	return ""
}

// Path is the node's absolute path in the image.
func (n *Node) Path() string {
	if n.parent == nil {
		return "/"
	}
	var parts []string
	for p := n; p.parent != nil; p = p.parent {
		parts = append(parts, p.Name)
	}
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return "/" + strings.Join(parts, "/")
}

// Host is the path the content is read from; "" for directories the tool
// makes itself (/, /nix, /nix/store and missing parents).
func (n *Node) Host() string {
	if n.is(inDir) {
		return n.parent.host() + "/" + n.Name
	}
	return n.host()
}

// HostIn returns the host directory the node's content is read from and
// its name there, when the node is read from its parent's host directory
// under its own name; ok is false otherwise.
func (n *Node) HostIn() (dir, name string, ok bool) {
	if n.is(inDir) {
		return n.parent.host(), n.Name, true
	}
	return "", "", false
}

// SetHost sets the path the content is read from.
func (n *Node) SetHost(host string) {
	if host != "" || n.more != nil {
		n.m().host = host
	}
	n.set(inDir, false)
}

// hasHost tells whether the node is read from the host.
func (n *Node) hasHost() bool { return n.is(inDir) || n.host() != "" }

// Parent is the directory holding the node (nil for the root).
func (n *Node) Parent() *Node { return n.parent }

// Child returns the child called name, or nil.
func (n *Node) Child(name string) *Node {
	ch := n.Children()
	i := sort.Search(len(ch), func(i int) bool { return ch[i].Name >= name })
	if i < len(ch) && ch[i].Name == name {
		return ch[i]
	}
	return nil
}

// add inserts c as a child, keeping children sorted; a name that exists
// already is an error.
func (n *Node) add(c *Node) error {
	ch := n.Children()
	i := sort.Search(len(ch), func(i int) bool { return ch[i].Name >= c.Name })
	if i < len(ch) && ch[i].Name == c.Name {
		return fmt.Errorf("%s: two entries of that name", path.Join(n.Path(), c.Name))
	}
	ch = append(ch, nil)
	copy(ch[i+1:], ch[i:])
	ch[i] = c
	n.m().children = ch
	if c.is(inDir) {
		c.SetHost(c.Host()) // it may move to another directory
	}
	c.parent = n
	return nil
}

// mkdirAll returns the directory at the absolute image path p, making the
// missing ones with mode 0755 owned by root.
func (n *Node) mkdirAll(p string) (*Node, error) {
	cur := n
	for _, name := range strings.Split(strings.Trim(p, "/"), "/") {
		if name == "" {
			continue
		}
		next := cur.Child(name)
		if next == nil {
			next = &Node{Name: name, Kind: Dir, Perm: 0o755}
			if err := cur.add(next); err != nil {
				return nil, err
			}
		} else if next.Kind != Dir {
			return nil, fmt.Errorf("%s is a %s, not a directory", next.Path(), next.Kind)
		}
		cur = next
	}
	return cur, nil
}

// AddLate adds a regular file at the absolute image path p whose content
// is only known later in the build, at most maxSize bytes with mode perm,
// owned by root. The caller sets Host before the last phase runs.
func (t *Tree) AddLate(p string, maxSize int64, perm uint32) (*Node, error) {
	if !strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "/" {
		return nil, fmt.Errorf("%s: not a clean absolute path in the image", p)
	}
	if p == t.Store.Path() || strings.HasPrefix(p, t.Store.Path()+"/") {
		return nil, fmt.Errorf("%s: inside the store directory", p)
	}
	dir, err := t.Root.mkdirAll(path.Dir(p))
	if err != nil {
		return nil, err
	}
	blocks := (maxSize + BlockSize - 1) / BlockSize
	n := &Node{Name: path.Base(p), Kind: File, Perm: perm, Size: maxSize, Blocks: blocks, Runs: 1, Links: 1, Late: true}
	if err := dir.add(n); err != nil {
		return nil, err
	}
	return n, nil
}

// Tree is the planned content of an image.
type Tree struct {
	Root *Node
	// Store is the node of the store directory (/nix/store).
	Store *Node
	// small is the size up to which the walk left store files unread,
	// when deferred is set (see Options.DeferSmall).
	small    int64
	deferred bool
	// hardLinks is set when a file has several names (see HardLinks).
	hardLinks bool
	// stream is set on a tree of Stream.
	stream *stream
}

// HardLinks reports whether any file of the tree has several names (a
// Primary, under Optimise).
func (t *Tree) HardLinks() bool { return t.hardLinks }

// Walk calls fn for every node in depth-first order, parents before their
// children, children in name order. fn returning false skips a directory's
// children. In a streamed tree it sees only the nodes held in memory (see
// Stream).
func (t *Tree) Walk(fn func(n *Node) bool) { walkFrom(t.Root, fn) }

// walkFrom is Tree.Walk from n.
func walkFrom(n *Node, fn func(n *Node) bool) {
	if !fn(n) {
		return
	}
	for _, c := range n.Children() {
		walkFrom(c, fn)
	}
}

// Stats counts what the tree holds.
type Stats struct {
	Dirs, Files, Symlinks, HardLinks int64
	// Bytes is the sum of the regular files' sizes (each inode once).
	Bytes int64
}

// Stats counts the entries of the tree, the root included.
func (t *Tree) Stats() Stats {
	var s Stats
	t.Walk(func(n *Node) bool {
		if sum := t.sumOf(n); sum != nil {
			s.add(sum.stats)
			return false
		}
		addStats(&s, n)
		return true
	})
	return s
}

// addStats counts node n in s.
func addStats(s *Stats, n *Node) {
	switch {
	case n.Kind == Dir:
		s.Dirs++
	case n.Kind == Symlink:
		s.Symlinks++
	case n.Primary() != nil:
		s.HardLinks++
	default:
		s.Files++
		s.Bytes += n.Size
	}
}
