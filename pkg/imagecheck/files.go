package imagecheck

import (
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
)

// under reports whether p is dir or inside it.
func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// fileCheck is a --files entry whose contents (a regular file's bytes or a
// symlink's target) must equal the source's.
type fileCheck struct {
	e   *Entry
	src string
}

// checkFiles checks the entries that are neither the layout's nor the
// store's: the --files content. Contents are compared later, from the
// contents stream (see fileChecks).
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
// (directories 0755, the rest as the source) and owner root; files and
// symlinks are queued for the contents comparison.
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
	if in.IsRegular() || in.IsSymlink() {
		v.fileChecks = append(v.fileChecks, fileCheck{e: e, src: src})
	}
}
