package imagecheck

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// under reports whether p is dir or inside it.
func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// checkFiles checks the entries that are neither the layout's nor the
// store's: the --files content.
func (v *verifier) checkFiles() {
	skel := v.skeleton()
	other := func(p string) bool {
		_, fixed := skel[p]
		return !fixed && !under(p, v.opts.Closure.StoreDir) && !under(p, "/lost+found")
	}
	if v.opts.Files == "" {
		for _, p := range v.tree.Paths() {
			if !other(p) {
				continue
			}
			in := v.tree.Lookup(p).Inode
			if in.UID != 0 || in.GID != 0 {
				v.addf(p, "owner %d:%d, want 0:0", in.UID, in.GID)
			}
			if in.IsDir() && in.Perm() != 0o755 {
				v.addf(p, "mode %04o, want 0755", in.Perm())
			}
		}
		return
	}

	want := map[string]bool{}
	err := filepath.WalkDir(v.opts.Files, func(fp string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(v.opts.Files, fp)
		if err != nil || rel == "." {
			return err
		}
		p := "/" + filepath.ToSlash(rel)
		if !other(p) {
			return nil
		}
		want[p] = true
		v.checkFileEntry(p, fp)
		return nil
	})
	if err != nil {
		v.addf("", "reading --files %s: %v", v.opts.Files, err)
	}
	var extraDir string
	for _, p := range v.tree.Paths() {
		if !other(p) || want[p] || (extraDir != "" && under(p, extraDir)) {
			continue
		}
		in := v.tree.Lookup(p).Inode
		v.addf(p, "extra entry (a %s not in %s)", in.TypeName(), v.opts.Files)
		if in.IsDir() {
			extraDir = p
		}
	}
}

// checkFileEntry compares one --files entry with the image: type, mode
// (directories 0755, the rest as the source), owner root, content, target.
func (v *verifier) checkFileEntry(p, src string) {
	var st syscall.Stat_t
	if err := syscall.Lstat(src, &st); err != nil {
		v.addf(p, "reading the source %s: %v", src, err)
		return
	}
	e := v.tree.Lookup(p)
	if e == nil {
		v.addf(p, "missing (the source %s has a %s)", src, typeName(st.Mode))
		return
	}
	in := e.Inode
	if in.Mode&modeTypeMask != st.Mode&modeTypeMask {
		v.addf(p, "is a %s, the source %s has a %s", in.TypeName(), src, typeName(st.Mode))
		return
	}
	wantPerm := st.Mode & 0o7777
	if in.IsDir() {
		wantPerm = 0o755
	}
	if in.Perm() != wantPerm {
		v.addf(p, "mode %04o, want %04o", in.Perm(), wantPerm)
	}
	if in.UID != 0 || in.GID != 0 {
		v.addf(p, "owner %d:%d, want 0:0", in.UID, in.GID)
	}
	if msg := v.compareContent(src, filepath.Join(v.dump, filepath.FromSlash(p)), st.Mode); msg != "" {
		v.addf(p, "%s", msg)
	}
}

// compareContent compares a regular file's bytes or a symlink's target in
// the source and in the image's copy; "" means equal (or not a file).
func (v *verifier) compareContent(src, dumped string, mode uint32) string {
	switch mode & modeTypeMask {
	case modeRegular:
		eq, err := sameContent(src, dumped)
		if err != nil {
			return fmt.Sprintf("cannot compare the content: %v", err)
		}
		if !eq {
			return fmt.Sprintf("content differs from %s", src)
		}
	case modeSymlink:
		want, err := os.Readlink(src)
		if err != nil {
			return fmt.Sprintf("reading the source: %v", err)
		}
		got, err := os.Readlink(dumped)
		if err != nil {
			return fmt.Sprintf("cannot read the symlink back: %v", err)
		}
		if got != want {
			return fmt.Sprintf("symlink target %s, the source has %s", quote(got), quote(want))
		}
	}
	return ""
}

// sameContent compares two files byte for byte, streaming.
func sameContent(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ra, rb := bufio.NewReaderSize(fa, 1<<16), bufio.NewReaderSize(fb, 1<<16)
	bufA, bufB := make([]byte, 1<<16), make([]byte, 1<<16)
	for {
		na, errA := io.ReadFull(ra, bufA)
		nb, errB := io.ReadFull(rb, bufB)
		if na != nb || !bytes.Equal(bufA[:na], bufB[:nb]) {
			return false, nil
		}
		endA := errors.Is(errA, io.EOF) || errors.Is(errA, io.ErrUnexpectedEOF)
		endB := errors.Is(errB, io.EOF) || errors.Is(errB, io.ErrUnexpectedEOF)
		if errA != nil && !endA {
			return false, errA
		}
		if errB != nil && !endB {
			return false, errB
		}
		if endA || endB {
			return endA && endB, nil
		}
	}
}

// contentDiff compares a store path's copy from the image with the source,
// entry by entry, and names what differs in names, contents and symlink
// targets (types and modes are checkStoreEntry's). It returns nothing when
// there is no source to compare with.
func (v *verifier) contentDiff(storePath string) []difference {
	if _, ok := v.sourceMode(storePath); !ok {
		return nil
	}
	var diffs []difference
	var rec func(p string)
	rec = func(p string) {
		src := filepath.Join(v.opts.Source, filepath.FromSlash(p))
		dumped := filepath.Join(v.dump, filepath.FromSlash(p))
		var st syscall.Stat_t
		if err := syscall.Lstat(src, &st); err != nil {
			return
		}
		e := v.tree.Lookup(p)
		if e == nil || e.Inode.Mode&modeTypeMask != st.Mode&modeTypeMask {
			return
		}
		if !e.Inode.IsDir() {
			if msg := v.compareContent(src, dumped, st.Mode); msg != "" {
				diffs = append(diffs, difference{p, msg})
			}
			return
		}
		names, err := readNames(src)
		if err != nil {
			diffs = append(diffs, difference{p, fmt.Sprintf("reading the source: %v", err)})
			return
		}
		inSrc := map[string]bool{}
		for _, n := range names {
			inSrc[n] = true
			c := joinPath(p, n)
			if v.tree.Lookup(c) == nil {
				var cst syscall.Stat_t
				_ = syscall.Lstat(filepath.Join(src, n), &cst)
				diffs = append(diffs, difference{c, fmt.Sprintf("missing (the source has a %s)", typeName(cst.Mode))})
				continue
			}
			rec(c)
		}
		for _, n := range e.Children {
			if !inSrc[n] {
				c := joinPath(p, n)
				diffs = append(diffs, difference{c, fmt.Sprintf("extra entry (a %s the source does not have)", v.tree.Lookup(c).Inode.TypeName())})
			}
		}
	}
	rec(storePath)
	return diffs
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	sort.Strings(names)
	return names, err
}
