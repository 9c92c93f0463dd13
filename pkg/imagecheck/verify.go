package imagecheck

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/mkext4fs/mkext4fs/pkg/closure"
)

// Defaults of the image layout (see the README).
const (
	DefaultRegistrationPath = "/nix-path-registration"
	// StoreGID is the group of the store directory, nixbld on NixOS.
	StoreGID = 30000
	// StoreDirMode is the mode of the store directory: group-writable,
	// sticky.
	StoreDirMode = 0o1775
)

// Options describe the image Verify expects.
type Options struct {
	// Closure is what the image must hold, with every NAR hash and size
	// known (see closure.Closure.Hash).
	Closure *closure.Closure
	// RegistrationPath is where the registration sits in the image; empty
	// means DefaultRegistrationPath.
	RegistrationPath string
	// Timestamp is the time every inode must carry, in seconds since the
	// epoch.
	Timestamp int64
	// UID and GID own everything inside the store paths.
	UID, GID uint32
	// Source, when not empty, is the root the closure was read from (store
	// path p at Source+p; "/" for the real store). Modes are then compared
	// with the source's instead of Nix's canonical ones, and a store path
	// whose content differs is compared file by file to name what differs.
	Source string
	// Files, when not empty, is the directory whose content was copied to
	// the image root (mkext4fs build --files): the image must then hold
	// exactly that besides the store, the registration and lost+found.
	// Without it other entries are allowed, and only their owner, times and
	// directory modes are checked.
	Files string
	// Workers bounds the store paths hashed at once; 0 means GOMAXPROCS.
	Workers int
	Tools   Tools
	// Logf, when set, receives one line per phase, with its duration.
	Logf func(format string, args ...any)
}

// Report is the outcome of Verify.
type Report struct {
	// Differences are the ways the image differs from what was expected,
	// sorted: whole-image ones first, then by path. Empty means it matches.
	Differences []string
	// Warnings are what could not be checked, without being a difference:
	// store paths holding names go-nix's NAR writer cannot serialize.
	Warnings []string
	// StorePaths and Entries count what was checked.
	StorePaths int
	Entries    int
}

// Match reports whether the image matched.
func (r *Report) Match() bool { return len(r.Differences) == 0 }

// Summary lists the first max differences, then how many more there are.
func (r *Report) Summary(max int) []string {
	if len(r.Differences) <= max {
		return r.Differences
	}
	out := append([]string(nil), r.Differences[:max]...)
	return append(out, fmt.Sprintf("… and %d more", len(r.Differences)-max))
}

type difference struct {
	path string // "" for whole-image differences
	msg  string
}

type verifier struct {
	opts    Options
	image   string
	tree    *Tree
	storeIn map[string]bool
	// targets holds the symlink targets read from the contents stream
	// (those too long to be kept in the inode).
	targets map[*Inode]string
	// fileChecks are the --files entries whose contents must equal the
	// source's.
	fileChecks []fileCheck
	diffs      []difference
	warnings   []string
}

func (v *verifier) addf(p, format string, args ...any) {
	v.diffs = append(v.diffs, difference{path: p, msg: fmt.Sprintf(format, args...)})
}

// Verify checks an image against a closure without mounting it: e2fsck -fn
// clean; every store path present, and nothing else under the store
// directory; every store path's NAR hash, computed from the image's files,
// equal to the closure's; the registration file byte for byte what the
// closure gives; modes, owners and times as the layout says; link counts
// consistent; every directory larger than one block indexed. It returns an
// error only when the check itself cannot run.
func Verify(ctx context.Context, image string, opts Options) (*Report, error) {
	if opts.Closure == nil {
		return nil, fmt.Errorf("verify: no closure given")
	}
	for _, p := range opts.Closure.Paths {
		if p.NarHash == "" {
			return nil, fmt.Errorf("verify: %s: NAR hash unknown (hash the closure first)", p.Path)
		}
	}
	if opts.RegistrationPath == "" {
		opts.RegistrationPath = DefaultRegistrationPath
	}
	if !path.IsAbs(opts.RegistrationPath) || path.Clean(opts.RegistrationPath) != opts.RegistrationPath || opts.RegistrationPath == "/" {
		return nil, fmt.Errorf("verify: registration path %q must be an absolute, clean file path", opts.RegistrationPath)
	}
	if _, err := os.Stat(image); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	var expectReg bytes.Buffer
	if err := opts.Closure.WriteRegistration(&expectReg); err != nil {
		return nil, fmt.Errorf("verify: writing the expected registration: %w", err)
	}

	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	phase := time.Now()
	since := func() float64 {
		d := time.Since(phase).Seconds()
		phase = time.Now()
		return d
	}

	v := &verifier{opts: opts, image: image, storeIn: map[string]bool{}, targets: map[*Inode]string{}}
	if err := Fsck(ctx, image, opts.Tools); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		v.addf("", "e2fsck reports problems: %v", err)
	}
	logf("e2fsck -fn: %.1f s", since())
	tree, err := Read(ctx, image, opts.Tools)
	if err != nil {
		return nil, fmt.Errorf("verify: reading %s: %w", image, err)
	}
	v.tree = tree
	logf("read %d entries with debugfs ls -p and stat: %.1f s", tree.Len(), since())
	for _, p := range tree.Problems {
		v.addf("", "debugfs: %s", p)
	}

	v.checkLayout()
	v.checkStore()
	v.checkFiles()
	v.checkInodes()
	logf("compared metadata: %.1f s", since())
	mismatched, err := v.checkContents(ctx, expectReg.Bytes())
	if err != nil {
		return nil, err
	}
	logf("hashed %d store paths and read the other files: %.1f s", len(v.storeIn), since())
	if err := v.nameContentDifferences(ctx, mismatched); err != nil {
		return nil, err
	}

	sort.SliceStable(v.diffs, func(i, j int) bool {
		a, b := v.diffs[i], v.diffs[j]
		if (a.path == "") != (b.path == "") {
			return a.path == ""
		}
		return a.path < b.path
	})
	r := &Report{StorePaths: len(opts.Closure.Paths), Entries: tree.Len(), Warnings: v.warnings}
	for _, d := range v.diffs {
		if d.path == "" {
			r.Differences = append(r.Differences, d.msg)
		} else {
			r.Differences = append(r.Differences, quote(d.path)+": "+d.msg)
		}
	}
	return r, nil
}

// expectDir checks that p is a directory with the given mode and owner.
func (v *verifier) expectNode(p string, mode uint32, uid, gid uint32) *Entry {
	e := v.tree.Lookup(p)
	if e == nil {
		v.addf(p, "missing (want a %s)", typeName(mode))
		return nil
	}
	in := e.Inode
	if in.Mode&modeTypeMask != mode&modeTypeMask {
		v.addf(p, "is a %s, want a %s", in.TypeName(), typeName(mode))
		return nil
	}
	if in.Perm() != mode&0o7777 {
		v.addf(p, "mode %04o, want %04o", in.Perm(), mode&0o7777)
	}
	if in.UID != uid || in.GID != gid {
		v.addf(p, "owner %d:%d, want %d:%d", in.UID, in.GID, uid, gid)
	}
	return e
}

// skeleton returns the paths the layout fixes, with their modes: the root,
// lost+found, the store directory and its parents, the registration and its
// parents.
func (v *verifier) skeleton() map[string]uint32 {
	s := map[string]uint32{"/": modeDir | 0o755, "/lost+found": modeDir | 0o700}
	for _, p := range []string{v.opts.Closure.StoreDir, v.opts.RegistrationPath} {
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			s[d] = modeDir | 0o755
		}
	}
	s[v.opts.Closure.StoreDir] = modeDir | StoreDirMode
	s[v.opts.RegistrationPath] = modeRegular | 0o444
	return s
}

func (v *verifier) checkLayout() {
	for p, mode := range v.skeleton() {
		gid := uint32(0)
		if p == v.opts.Closure.StoreDir {
			gid = StoreGID
		}
		v.expectNode(p, mode, 0, gid)
	}
	if lf := v.tree.Lookup("/lost+found"); lf != nil {
		for _, c := range lf.Children {
			v.addf(joinPath("/lost+found", c), "unexpected entry in lost+found")
		}
	}
}

// checkStore compares the store directory's entries with the closure, and
// the metadata of everything inside each store path.
func (v *verifier) checkStore() {
	storeDir := v.opts.Closure.StoreDir
	want := map[string]bool{}
	for _, p := range v.opts.Closure.Paths {
		want[p.Path] = true
	}
	if sd := v.tree.Lookup(storeDir); sd != nil && sd.Inode.IsDir() {
		for _, c := range sd.Children {
			p := joinPath(storeDir, c)
			if !want[p] {
				v.addf(p, "extra entry in the store (a %s not in the closure)", v.tree.Lookup(p).Inode.TypeName())
				continue
			}
			v.storeIn[p] = true
		}
	}
	for _, p := range v.opts.Closure.Paths {
		if !v.storeIn[p.Path] {
			v.addf(p.Path, "missing from the image")
			continue
		}
		v.walk(p.Path, v.checkStoreEntry)
	}
}

// walk calls fn for p and every entry below it, in path order.
func (v *verifier) walk(p string, fn func(*Entry)) {
	e := v.tree.Lookup(p)
	if e == nil {
		return
	}
	fn(e)
	for _, c := range e.Children {
		v.walk(joinPath(p, c), fn)
	}
}

// checkStoreEntry checks type, mode and owner of one entry of a store path.
// The mode is the source's when the source is at hand, else Nix's canonical
// one: 0444 or 0555 for files, 0555 for directories.
func (v *verifier) checkStoreEntry(e *Entry) {
	in := e.Inode
	if in.UID != v.opts.UID || in.GID != v.opts.GID {
		v.addf(e.Path, "owner %d:%d, want %d:%d", in.UID, in.GID, v.opts.UID, v.opts.GID)
	}
	if src, ok := v.sourceMode(e.Path); ok {
		if src&modeTypeMask != in.Mode&modeTypeMask {
			v.addf(e.Path, "is a %s, the source has a %s", in.TypeName(), typeName(src))
		} else if src&0o7777 != in.Perm() {
			v.addf(e.Path, "mode %04o, the source has %04o", in.Perm(), src&0o7777)
		}
		return
	}
	switch {
	case in.IsDir():
		if in.Perm() != 0o555 {
			v.addf(e.Path, "mode %04o, want 0555", in.Perm())
		}
	case in.IsRegular():
		if in.Perm() != 0o444 && in.Perm() != 0o555 {
			v.addf(e.Path, "mode %04o, want 0444 or 0555", in.Perm())
		}
	case in.IsSymlink():
		if in.Perm() != 0o777 {
			v.addf(e.Path, "mode %04o, want 0777", in.Perm())
		}
	default:
		v.addf(e.Path, "is a %s, which a store path cannot hold", in.TypeName())
	}
}

// sourceMode returns the Linux mode of p in the source tree, if there is one.
func (v *verifier) sourceMode(p string) (uint32, bool) {
	if v.opts.Source == "" {
		return 0, false
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(v.opts.Source, p), &st); err != nil {
		return 0, false
	}
	return st.Mode, true
}

// firstDifference describes where two texts first differ, by line.
func firstDifference(got, want []byte) string {
	gl := strings.SplitAfter(string(got), "\n")
	wl := strings.SplitAfter(string(want), "\n")
	for i := 0; i < len(gl) || i < len(wl); i++ {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			switch {
			case i >= len(gl) || g == "":
				return fmt.Sprintf("line %d: image's file ends, want %q (%d bytes instead of %d)", i+1, w, len(got), len(want))
			case i >= len(wl) || w == "":
				return fmt.Sprintf("line %d: %q, want the end of the file (%d bytes instead of %d)", i+1, g, len(got), len(want))
			}
			return fmt.Sprintf("line %d: %q, want %q", i+1, g, w)
		}
	}
	return "they differ"
}

// checkInodes checks what every inode must satisfy: times, link counts,
// directory indexes.
func (v *verifier) checkInodes() {
	ts := Timestamp{Sec: v.opts.Timestamp}
	seen := map[*Inode]bool{}
	for _, p := range v.tree.Paths() {
		in := v.tree.Lookup(p).Inode
		if seen[in] {
			continue
		}
		seen[in] = true
		var bad []string
		for _, t := range []struct {
			name string
			ts   Timestamp
			has  bool
		}{{"atime", in.Atime, true}, {"ctime", in.Ctime, true}, {"mtime", in.Mtime, true}, {"crtime", in.Crtime, in.HasCrtime}} {
			if t.has && t.ts != ts {
				bad = append(bad, fmt.Sprintf("%s %s", t.name, t.ts))
			}
		}
		if len(bad) > 0 {
			v.addf(p, "%s, want %s", strings.Join(bad, ", "), ts)
		}
		if in.IsDir() {
			// lost+found is made with empty blocks to spare, unindexed.
			if in.Size > v.tree.BlockSize && in.Flags&FlagIndex == 0 && p != "/lost+found" {
				v.addf(p, "directory of %d blocks without an htree index", in.Size/v.tree.BlockSize)
			}
		} else if int(in.Links) != in.Entries {
			v.addf(p, "link count %d, but %d entries name inode %d", in.Links, in.Entries, in.Ino)
		}
	}
}
