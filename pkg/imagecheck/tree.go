package imagecheck

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// File type bits of an ext4 i_mode.
const (
	modeTypeMask = 0o170000
	modeDir      = 0o040000
	modeRegular  = 0o100000
	modeSymlink  = 0o120000
)

// Inode flags (i_flags) the checks look at.
const (
	// FlagIndex marks a directory with an htree index (EXT2_INDEX_FL).
	FlagIndex = 0x1000
)

// rootIno is the inode number of the root directory.
const rootIno = 2

// Timestamp is an inode time decoded from ext4's 32-bit seconds and the
// extra field (2 epoch bits, 30 bits of nanoseconds).
type Timestamp struct {
	Sec  int64
	Nsec uint32
}

func decodeTime(lo, extra uint32) Timestamp {
	return Timestamp{Sec: int64(int32(lo)) + int64(extra&3)<<32, Nsec: extra >> 2}
}

func (t Timestamp) String() string {
	if t.Nsec == 0 {
		return strconv.FormatInt(t.Sec, 10)
	}
	return fmt.Sprintf("%d.%09d", t.Sec, t.Nsec)
}

// Inode is what the image says about one inode.
type Inode struct {
	Ino uint32
	// Mode is i_mode: the file type and permission bits.
	Mode     uint32
	UID, GID uint32
	Size     uint64
	Links    uint32
	Flags    uint32
	Ctime    Timestamp
	Atime    Timestamp
	Mtime    Timestamp
	Crtime   Timestamp
	// HasCrtime is false on filesystems with 128-byte inodes.
	HasCrtime bool
	// Entries counts the directory entries (other than "." and "..")
	// that name this inode.
	Entries int
	// Target is a symlink's target when it is kept in the inode (under
	// 60 bytes); HasTarget says so. Longer ones are read with
	// ContentStream, like file contents.
	Target    string
	HasTarget bool
}

// IsDir, IsRegular and IsSymlink tell the file type.
func (i *Inode) IsDir() bool     { return i.Mode&modeTypeMask == modeDir }
func (i *Inode) IsRegular() bool { return i.Mode&modeTypeMask == modeRegular }
func (i *Inode) IsSymlink() bool { return i.Mode&modeTypeMask == modeSymlink }

// Perm returns the permission bits, setuid, setgid and sticky included.
func (i *Inode) Perm() uint32 { return i.Mode & 0o7777 }

// TypeName names the file type the way messages do.
func (i *Inode) TypeName() string { return typeName(i.Mode) }

func typeName(mode uint32) string {
	switch mode & modeTypeMask {
	case modeDir:
		return "directory"
	case modeRegular:
		return "regular file"
	case modeSymlink:
		return "symlink"
	case 0o060000:
		return "block device"
	case 0o020000:
		return "character device"
	case 0o010000:
		return "fifo"
	case 0o140000:
		return "socket"
	}
	return fmt.Sprintf("unknown type %06o", mode&modeTypeMask)
}

// Entry is one name in the image.
type Entry struct {
	// Path is absolute, "/" for the root; names are the raw bytes of the
	// directory entries.
	Path  string
	Inode *Inode
	// Children are the names in a directory, sorted bytewise, without "."
	// and "..".
	Children []string
}

// Tree is the directory tree of an image as debugfs reads it, with every
// inode's metadata.
type Tree struct {
	// Super holds the superblock fields of debugfs' "stats -h", by name
	// ("Block size", "Filesystem features", …).
	Super map[string]string
	// BlockSize is the filesystem block size in bytes.
	BlockSize uint64
	entries   map[string]*Entry
	// Problems are what debugfs reported while reading the tree: inodes it
	// could not read, directories linked twice, inconsistent listings.
	Problems []string
}

// Lookup returns the entry at an absolute path, or nil.
func (t *Tree) Lookup(path string) *Entry { return t.entries[path] }

// Paths returns every path in the tree, sorted bytewise.
func (t *Tree) Paths() []string {
	ps := make([]string, 0, len(t.entries))
	for p := range t.entries {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// Len returns the number of entries, the root included.
func (t *Tree) Len() int { return len(t.entries) }

func joinPath(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// Read walks the whole tree of an ext4 image with debugfs, read-only and
// without mounting it: "ls -p" of every directory and "stat" of every inode,
// one debugfs process per tree level. Inodes are addressed by number, so no
// name is ever parsed by debugfs.
func Read(ctx context.Context, image string, tools Tools) (*Tree, error) {
	debugfs, err := tools.debugfs()
	if err != nil {
		return nil, err
	}
	t := &Tree{entries: map[string]*Entry{}}
	inodes := map[uint32]*Inode{}
	root := &Entry{Path: "/", Inode: &Inode{Ino: rootIno, Mode: modeDir}}
	t.entries["/"] = root
	inodes[rootIno] = root.Inode

	dirs := []*Entry{root}         // to list in the next round
	toStat := []*Inode{root.Inode} // to stat in the next round
	first := true
	for len(dirs) > 0 || len(toStat) > 0 {
		var cmds []string
		if first {
			cmds = append(cmds, "stats -h")
		}
		for _, d := range dirs {
			cmds = append(cmds, fmt.Sprintf("ls -p <%d>", d.Inode.Ino))
		}
		for _, in := range toStat {
			cmds = append(cmds, fmt.Sprintf("stat <%d>", in.Ino))
		}
		res, err := runScript(ctx, debugfs, image, cmds)
		if err != nil {
			return nil, err
		}
		if first {
			if err := t.readSuper(res[0].out); err != nil {
				return nil, fmt.Errorf("%s: %w", image, err)
			}
			res = res[1:]
			first = false
		}
		listed, stated := res[:len(dirs)], res[len(dirs):]
		var nextDirs []*Entry
		var nextStat []*Inode
		for i, d := range dirs {
			ents, err := parseLsP(listed[i].out)
			if err != nil {
				t.problemf("%s: listing the directory: %v", quote(d.Path), err)
				continue
			}
			for _, de := range ents {
				if de.Ino == 0 || de.Name == "." || de.Name == ".." {
					continue
				}
				p := joinPath(d.Path, de.Name)
				if _, dup := t.entries[p]; dup {
					t.problemf("%s: name listed twice in its directory", quote(p))
					continue
				}
				d.Children = append(d.Children, de.Name)
				in, known := inodes[de.Ino]
				if !known {
					in = &Inode{Ino: de.Ino, Mode: de.Mode, UID: de.UID, GID: de.GID, Size: de.Size}
					inodes[de.Ino] = in
					nextStat = append(nextStat, in)
				}
				in.Entries++
				e := &Entry{Path: p, Inode: in}
				t.entries[p] = e
				if in.IsDir() {
					if known {
						t.problemf("%s: directory inode %d is linked more than once", quote(p), de.Ino)
						continue
					}
					nextDirs = append(nextDirs, e)
				}
			}
			sort.Strings(d.Children)
		}
		for i, in := range toStat {
			st, err := parseStat(stated[i].out)
			if err == nil && st.Ino != in.Ino {
				err = fmt.Errorf("stat of inode %d answered for inode %d", in.Ino, st.Ino)
			}
			if err != nil {
				t.problemf("inode %d (%s): %v", in.Ino, quote(t.pathOf(in)), err)
				continue
			}
			// ls -p prints no size for directories.
			in.Flags, in.Links, in.Size = st.Flags, st.Links, st.Size
			in.Ctime, in.Atime, in.Mtime, in.Crtime, in.HasCrtime = st.Ctime, st.Atime, st.Mtime, st.Crtime, st.HasCrtime
			in.Target, in.HasTarget = st.Target, st.HasTarget
			if in.Ino == rootIno {
				in.Mode = modeDir | st.Perm
				in.UID, in.GID = st.UID, st.GID
			} else if in.Perm() != st.Perm || in.UID != st.UID || in.GID != st.GID {
				t.problemf("inode %d (%s): ls -p and stat disagree", in.Ino, quote(t.pathOf(in)))
			}
		}
		dirs, toStat = nextDirs, nextStat
	}
	return t, nil
}

func (t *Tree) problemf(format string, args ...any) {
	t.Problems = append(t.Problems, fmt.Sprintf(format, args...))
}

// pathOf finds a path naming the inode, for messages.
func (t *Tree) pathOf(in *Inode) string {
	best := ""
	for p, e := range t.entries {
		if e.Inode == in && (best == "" || p < best) {
			best = p
		}
	}
	return best
}

func (t *Tree) readSuper(out []byte) error {
	t.Super = map[string]string{}
	// The volume name and last mount point come first and may hold any
	// text; later lines with the same key win.
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		t.Super[k] = strings.TrimSpace(v)
	}
	bs, err := strconv.ParseUint(t.Super["Block size"], 10, 32)
	if err != nil || bs == 0 {
		return fmt.Errorf("cannot read the block size from debugfs stats: %q", firstLines(string(clip(out, 400)), 3))
	}
	t.BlockSize = bs
	return nil
}

// quote returns a path as it is when it is plain printable text, else
// Go-quoted, so that hostile names cannot forge a line of a report.
func quote(p string) string {
	for _, r := range p {
		if r < 0x21 || r == 0x7f || r == '"' || r == '\\' || r == 0xfffd {
			return strconv.Quote(p)
		}
	}
	return p
}
