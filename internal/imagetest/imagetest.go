// Package imagetest helps the tests that build real images: it makes store
// trees with graph files, and reads finished images back through the
// kernel's ext4 driver (a read-only loop mount) to compare them, entry by
// entry, with their source.
package imagetest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/mkext4fs/mkext4fs/internal/testutil"
	"github.com/mkext4fs/mkext4fs/pkg/debugfsgen"
	"golang.org/x/sys/unix"
)

// StorePathName returns a valid store path base name for an index and a
// name: 32 characters of nix-base32 and the name.
func StorePathName(i int, name string) string {
	const alphabet = "0123456789abcdfghijklmnpqrsvwxyz"
	b := make([]byte, 32)
	x := uint64(i)*2654435761 + 12345
	for j := range b {
		x = x*6364136223846793005 + 1442695040888963407
		b[j] = alphabet[(x>>33)%32]
	}
	return string(b) + "-" + name
}

// Store is a store tree made for a test: Root/nix/store/... and a graph.
type Store struct {
	Root  string
	Paths []string // absolute store paths (/nix/store/...)
	Graph string   // text-form graph of all paths
}

// Host returns the host path of store path p.
func (s *Store) Host(p string) string { return filepath.Join(s.Root, p) }

// NewStore makes an empty store tree in a temporary directory.
func NewStore(t testing.TB) *Store {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "nix", "store"), 0o755); err != nil {
		t.Fatal(err)
	}
	return &Store{Root: root}
}

// Add makes a store path whose content fill writes into dir (a directory
// to populate, or the path itself for fill to create as a file or link).
func (s *Store) Add(t testing.TB, name string, fill func(path string) error) string {
	t.Helper()
	p := "/nix/store/" + StorePathName(len(s.Paths), name)
	if err := fill(s.Host(p)); err != nil {
		t.Fatalf("make %s: %v", p, err)
	}
	s.Paths = append(s.Paths, p)
	return p
}

// Finish canonicalises modes as a Nix store has them (files 0444 or 0555,
// directories 0555) and writes the graph: each path referring to itself
// and to the first path.
func (s *Store) Finish(t testing.TB) {
	t.Helper()
	for _, p := range s.Paths {
		if err := Canonicalise(s.Host(p)); err != nil {
			t.Fatal(err)
		}
	}
	var b strings.Builder
	sorted := append([]string(nil), s.Paths...)
	sort.Strings(sorted)
	for _, p := range sorted {
		refs := []string{p}
		if p != s.Paths[0] {
			refs = append(refs, s.Paths[0])
		}
		sort.Strings(refs)
		fmt.Fprintf(&b, "%s\n\n%d\n%s\n", p, len(refs), strings.Join(refs, "\n"))
	}
	s.Graph = filepath.Join(s.Root, "closure")
	if err := os.WriteFile(s.Graph, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Canonicalise gives a tree the modes of the Nix store: directories and
// executables 0555, other files 0444.
func Canonicalise(root string) error {
	var dirs []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
		case fi.IsDir():
			dirs = append(dirs, p)
		case fi.Mode()&0o100 != 0:
			return os.Chmod(p, 0o555)
		default:
			return os.Chmod(p, 0o444)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(dirs[i], 0o555); err != nil {
			return err
		}
	}
	return nil
}

// Mount mounts an image read-only and returns the mount point; it is
// unmounted when the test ends.
func Mount(t testing.TB, image string) string {
	t.Helper()
	testutil.RequireRoot(t)
	mnt := t.TempDir()
	out, err := exec.Command("mount", "-o", "ro,loop,noatime", "-t", "ext4", image, mnt).CombinedOutput()
	if err != nil {
		testutil.Unavailable(t, "loop mount of %s: %v: %s", image, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// Want is what a compared entry must have beside its source's content.
type Want struct {
	UID, GID uint32
	// Time is every inode time.
	Time int64
	// Links: with Optimise, files of equal content and mode may share an
	// inode; without, every file has one link.
	Optimise bool
	// Sample, when above 1, reads the content of only every Sample-th
	// file (all entries are still listed and stat'ed): for large trees.
	Sample int
}

// Entry describes one file-system entry for comparison.
type Entry struct {
	Type     string // dir, file, symlink
	Perm     uint32 // mode & 07777
	Size     int64
	Digest   [32]byte
	Target   string
	UID, GID uint32
	Nlink    uint64
	Times    [3]int64 // atime, mtime, ctime (seconds)
	Ino      uint64
	Children []string
}

// Stat describes the entry at p like Read, without reading a file's
// content (Digest stays zero).
func Stat(p string) (*Entry, error) { return describe(p, false) }

// Read describes the entry at p (never following a symlink).
func Read(p string) (*Entry, error) { return describe(p, true) }

func describe(p string, content bool) (*Entry, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return nil, err
	}
	e := &Entry{Perm: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid, Nlink: uint64(st.Nlink),
		Times: [3]int64{st.Atim.Sec, st.Mtim.Sec, st.Ctim.Sec}, Ino: st.Ino}
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		e.Type = "dir"
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return nil, err
		}
		sort.Strings(names)
		e.Children = names
	case syscall.S_IFREG:
		e.Type = "file"
		e.Size = st.Size
		if !content {
			break
		}
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return nil, err
		}
		copy(e.Digest[:], h.Sum(nil))
	case syscall.S_IFLNK:
		e.Type = "symlink"
		t, err := os.Readlink(p)
		if err != nil {
			return nil, err
		}
		e.Target = t
	default:
		e.Type = fmt.Sprintf("mode %o", st.Mode)
	}
	return e, nil
}

// CompareTree compares the image tree at img with the source tree at src,
// entry by entry, and returns the differences.
func CompareTree(src, img string, want Want) []string {
	var diffs []string
	add := func(format string, args ...any) {
		if len(diffs) < 50 {
			diffs = append(diffs, fmt.Sprintf(format, args...))
		}
	}
	files := 0
	var walk func(rel string)
	walk = func(rel string) {
		readContent := true
		if want.Sample > 1 {
			if fi, err := os.Lstat(filepath.Join(src, rel)); err == nil && fi.Mode().IsRegular() {
				files++
				readContent = files%want.Sample == 1
			}
		}
		read := Read
		if !readContent {
			read = Stat
		}
		s, err := read(filepath.Join(src, rel))
		if err != nil {
			add("%s: source: %v", rel, err)
			return
		}
		i, err := read(filepath.Join(img, rel))
		if err != nil {
			add("%s: image: %v", rel, err)
			return
		}
		if s.Type != i.Type {
			add("%s: type %s, want %s", rel, i.Type, s.Type)
			return
		}
		if s.Perm != i.Perm && s.Type != "symlink" {
			add("%s: mode %o, want %o", rel, i.Perm, s.Perm)
		}
		if i.UID != want.UID || i.GID != want.GID {
			add("%s: owner %d:%d, want %d:%d", rel, i.UID, i.GID, want.UID, want.GID)
		}
		for k, t := range i.Times {
			if t != want.Time {
				add("%s: time %d is %d, want %d", rel, k, t, want.Time)
			}
		}
		switch s.Type {
		case "file":
			if s.Size != i.Size || s.Digest != i.Digest {
				add("%s: content differs (size %d, want %d)", rel, i.Size, s.Size)
			}
			if !want.Optimise && i.Nlink != 1 {
				add("%s: %d links, want 1", rel, i.Nlink)
			}
		case "symlink":
			if s.Target != i.Target {
				add("%s: target %q, want %q", rel, i.Target, s.Target)
			}
		case "dir":
			if strings.Join(s.Children, "\x00") != strings.Join(i.Children, "\x00") {
				add("%s: entries %q, want %q", rel, trim(i.Children), trim(s.Children))
				return
			}
			for _, c := range s.Children {
				walk(filepath.Join(rel, c))
			}
		}
	}
	walk(".")
	return diffs
}

func trim(names []string) []string {
	if len(names) > 10 {
		return append(append([]string(nil), names[:10]...), fmt.Sprintf("… %d in all", len(names)))
	}
	return names
}

// CompareImage checks a mounted image against a store: /nix/store holds
// exactly the store paths, each identical to its source, and the
// registration is at /nix-path-registration.
func CompareImage(t testing.TB, mnt string, s *Store, want Want) {
	t.Helper()
	storeDir := filepath.Join(mnt, "nix", "store")
	e, err := Read(storeDir)
	if err != nil {
		t.Fatalf("image: %v", err)
	}
	var names []string
	for _, p := range s.Paths {
		names = append(names, filepath.Base(p))
	}
	sort.Strings(names)
	if strings.Join(e.Children, "\n") != strings.Join(names, "\n") {
		t.Fatalf("image /nix/store holds %q, want %q", trim(e.Children), trim(names))
	}
	if e.Perm != 0o1775 || e.UID != 0 || e.GID != 30000 {
		t.Errorf("/nix/store: mode %o owner %d:%d, want 1775 0:30000", e.Perm, e.UID, e.GID)
	}
	for _, p := range s.Paths {
		if diffs := CompareTree(s.Host(p), filepath.Join(mnt, p), want); len(diffs) > 0 {
			t.Errorf("%s differs from its source:\n%s", p, strings.Join(diffs, "\n"))
		}
	}
	unindexed, err := Unindexed(mnt)
	if err != nil {
		t.Fatal(err)
	}
	if len(unindexed) > 0 {
		t.Errorf("directories of more than one block without an htree index: %s", strings.Join(trim(unindexed), ", "))
	}
	reg, err := os.ReadFile(filepath.Join(mnt, "nix-path-registration"))
	if err != nil {
		t.Fatalf("registration: %v", err)
	}
	for _, p := range s.Paths {
		if !bytes.Contains(reg, []byte(p+"\n")) {
			t.Errorf("registration lacks %s", p)
		}
	}
}

// ext4's inode flag for a hash-indexed directory, as FS_IOC_GETFLAGS gives it.
const indexFlag = 0x1000

// Unindexed returns the directories under root (a mounted image) that span
// more than one block but have no htree index (see walkLargeDirs).
func Unindexed(root string) ([]string, error) {
	var out []string
	err := walkLargeDirs(root, func(p string, fi os.FileInfo) error {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
		if err != nil {
			return fmt.Errorf("FS_IOC_GETFLAGS %s: %w", p, err)
		}
		if flags&indexFlag == 0 {
			out = append(out, fmt.Sprintf("%s (%d bytes)", p, fi.Size()))
		}
		return nil
	})
	return out, err
}

// walkLargeDirs calls fn for every directory under root (a mounted image)
// that spans more than one block, lost+found left out: mkfs gives it empty
// blocks ahead of need, and e2fsck never indexes it.
func walkLargeDirs(root string, fn func(p string, fi os.FileInfo) error) error {
	return filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.IsDir() || fi.Size() <= 4096 || p == filepath.Join(root, "lost+found") {
			return err
		}
		return fn(p, fi)
	})
}

// htreeEntry is how debugfs' htree command prints an entry of a leaf block:
// inode, hash-minor hash, record length, then the name and three blanks;
// short entries share a line.
var htreeEntry = regexp.MustCompile(`(?:^|   )\d+ 0x[0-9a-f]{8}-[0-9a-f]{8} \(\d+\) `)

// CheckHtrees reads the index of every directory of the image that spans
// more than one block with debugfs -R "htree DIR", and compares the names
// its leaves hold with those the mounted image at mnt lists: each once,
// none missing.
func CheckHtrees(t *testing.T, image, mnt string) (checked int) {
	t.Helper()
	err := walkLargeDirs(mnt, func(p string, _ os.FileInfo) error {
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, mnt), "/")
		q, err := debugfsgen.Quote(rel)
		if err != nil {
			return err
		}
		out, err := exec.Command("debugfs", "-R", "htree "+q, image).CombinedOutput()
		if err != nil {
			return fmt.Errorf("debugfs htree %s: %v\n%s", rel, err, out)
		}
		if !bytes.Contains(out, []byte("\nRoot node dump:\n")) {
			return fmt.Errorf("debugfs htree %s: no root node:\n%s", rel, out)
		}
		got := map[string]int{}
		for _, line := range strings.Split(string(out), "\n") {
			starts := htreeEntry.FindAllStringIndex(line, -1)
			for i, s := range starts {
				end := len(line)
				if i+1 < len(starts) {
					end = starts[i+1][0]
				}
				// The name ends at the last three blanks: the leaf's
				// checksum may follow on the line.
				name := line[s[1]:end]
				if i := strings.LastIndex(name, "   "); i >= 0 {
					name = name[:i]
				}
				got[name]++
			}
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if got[e.Name()] != 1 {
				return fmt.Errorf("debugfs htree %s: %q listed %d times in the index's leaves", rel, e.Name(), got[e.Name()])
			}
			delete(got, e.Name())
		}
		for name := range got {
			return fmt.Errorf("debugfs htree %s: leaf entry %q is not in the directory", rel, name)
		}
		checked++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return checked
}
