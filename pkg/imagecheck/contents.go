package imagecheck

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// errDotDotName: go-nix's NAR writer derives entry names with filepath.Rel
// and takes a name starting with ".." for a step up the tree, so it cannot
// serialize such a name (Nix can).
var errDotDotName = errors.New(`names starting with ".." cannot be serialized by the NAR writer in use (github.com/nix-community/go-nix/pkg/nar)`)

// needsContent reports whether an inode's bytes come from the contents
// stream: regular files, and symlinks whose target is not in the inode.
func needsContent(in *Inode) bool {
	return in.IsRegular() || (in.IsSymlink() && !in.HasTarget)
}

// entriesOf returns p and everything below it in NAR order: depth first,
// names in bytewise order.
func (v *verifier) entriesOf(p string) []*Entry {
	var out []*Entry
	var rec func(p string)
	rec = func(p string) {
		e := v.tree.Lookup(p)
		if e == nil {
			return
		}
		out = append(out, e)
		for _, c := range e.Children {
			rec(joinPath(p, c))
		}
	}
	rec(p)
	return out
}

// checkContents reads every file the checks need in one pass of debugfs
// "cat" (store paths in order, then the registration, then the --files
// content) and compares: NAR hash and size of each store path, the
// registration's bytes, the --files contents. It returns the store paths
// whose NAR differs.
func (v *verifier) checkContents(ctx context.Context, wantReg []byte) ([]string, error) {
	var inos []uint32
	var sizes []uint64
	add := func(in *Inode) {
		inos = append(inos, in.Ino)
		sizes = append(sizes, in.Size)
	}
	var storePaths []string
	for _, p := range v.opts.Closure.Paths {
		if !v.storeIn[p.Path] {
			continue
		}
		storePaths = append(storePaths, p.Path)
		for _, e := range v.entriesOf(p.Path) {
			if needsContent(e.Inode) {
				add(e.Inode)
			}
		}
	}
	reg := v.tree.Lookup(v.opts.RegistrationPath)
	if reg != nil && !reg.Inode.IsRegular() {
		reg = nil // checkLayout said so
	}
	if reg != nil {
		add(reg.Inode)
	}
	for _, fc := range v.fileChecks {
		if needsContent(fc.e.Inode) {
			add(fc.e.Inode)
		}
	}

	s, err := StreamContents(ctx, v.image, v.opts.Tools, inos, sizes)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	want := map[string]string{}
	wantSize := map[string]uint64{}
	for _, p := range v.opts.Closure.Paths {
		want[p.Path], wantSize[p.Path] = p.NarHash, p.NarSize
	}
	var mismatched []string
	var streamErr error
	done := 0
	for _, p := range storePaths {
		hash, size, narErr, err := v.hashStorePath(p, s)
		if err != nil {
			streamErr = err
			break
		}
		done++
		switch {
		case errors.Is(narErr, errDotDotName):
			// As mkext4fs build does: a warning, and the path is compared
			// with the source file by file instead, where there is one.
			how := "compared file by file with the source instead"
			if _, ok := v.sourceMode(p); !ok {
				how = "its contents are not checked"
			}
			v.warnings = append(v.warnings, fmt.Sprintf("%s: %v: %s", p, narErr, how))
			mismatched = append(mismatched, p)
		case narErr != nil:
			v.addf(p, "cannot be serialized as a NAR: %v", narErr)
		case hash != want[p] || size != wantSize[p]:
			v.addf(p, "content differs from the closure: NAR hash %s, size %d in the image; %s, size %d expected", hash, size, want[p], wantSize[p])
			mismatched = append(mismatched, p)
		}
	}
	if streamErr == nil && reg != nil {
		streamErr = v.compareRegistration(s, wantReg)
	}
	if streamErr == nil {
		for _, fc := range v.fileChecks {
			if streamErr = v.compareFile(s, fc); streamErr != nil {
				break
			}
		}
	}
	if err := s.Close(); err != nil && streamErr == nil {
		streamErr = err
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if streamErr != nil {
		v.addf("", "the contents could not be read (%d of %d store paths hashed): %v", done, len(storePaths), streamErr)
	}
	return mismatched, nil
}

// failingReader remembers a read error so that it can be told from a write
// error after io.Copy.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		f.err = err
	}
	return n, err
}

// hashStorePath serializes a store path from the tree and the contents
// stream with go-nix's NAR writer and hashes it. narErr is a store path that
// cannot be a NAR (a device node, say); err is a failure of the stream, after
// which nothing more can be read.
func (v *verifier) hashStorePath(p string, s *ContentStream) (hash string, size uint64, narErr, err error) {
	for _, e := range v.entriesOf(p) {
		if e.Path != p && strings.HasPrefix(path.Base(e.Path), "..") {
			narErr = fmt.Errorf("%s: %w", quote(e.Path), errDotDotName)
			break
		}
	}
	h := sha256.New()
	var cw countingWriter
	bw := bufio.NewWriterSize(io.MultiWriter(h, &cw), 1<<16)
	var nw *nar.Writer
	if narErr == nil {
		nw, narErr = nar.NewWriter(bw)
	}
	for _, e := range v.entriesOf(p) {
		in := e.Inode
		hdr := nar.Header{Path: "/" + strings.TrimPrefix(strings.TrimPrefix(e.Path, p), "/")}
		var content io.Reader
		switch {
		case in.IsDir():
			hdr.Type = nar.TypeDirectory
		case in.IsRegular():
			r, err := s.Next()
			if err != nil {
				return "", 0, nil, err
			}
			hdr.Type, hdr.Size, hdr.Executable = nar.TypeRegular, int64(in.Size), in.Mode&0o100 != 0
			content = r
		case in.IsSymlink():
			target, err := v.target(in, s)
			if err != nil {
				return "", 0, nil, err
			}
			hdr.Type, hdr.LinkTarget = nar.TypeSymlink, target
		default:
			if narErr == nil {
				narErr = fmt.Errorf("%s is a %s", quote(e.Path), in.TypeName())
			}
			continue
		}
		if narErr == nil {
			if err := nw.WriteHeader(&hdr); err != nil {
				narErr = fmt.Errorf("%s: %w", quote(e.Path), err)
			}
		}
		if content == nil {
			continue
		}
		fr := &failingReader{r: content}
		var dst io.Writer = io.Discard
		if narErr == nil {
			dst = nw
		}
		if _, err := io.Copy(dst, fr); err != nil {
			if fr.err != nil {
				return "", 0, nil, fr.err
			}
			narErr = fmt.Errorf("%s: %w", quote(e.Path), err)
			if _, err := io.Copy(io.Discard, fr); err != nil {
				return "", 0, nil, err
			}
		}
	}
	if narErr != nil {
		return "", 0, narErr, nil
	}
	if err := nw.Close(); err != nil {
		return "", 0, err, nil
	}
	if err := bw.Flush(); err != nil {
		return "", 0, err, nil
	}
	return "sha256:" + nixbase32.EncodeToString(h.Sum(nil)), cw.n, nil, nil
}

type countingWriter struct{ n uint64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += uint64(len(p))
	return len(p), nil
}

// target returns a symlink's target: from the inode, or read from the
// stream (and remembered) when it is too long for the inode.
func (v *verifier) target(in *Inode, s *ContentStream) (string, error) {
	if in.HasTarget {
		return in.Target, nil
	}
	if t, ok := v.targets[in]; ok && s == nil {
		return t, nil
	}
	r, err := s.Next()
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	v.targets[in] = string(b)
	return string(b), nil
}

func (v *verifier) compareRegistration(s *ContentStream, want []byte) error {
	r, err := s.Next()
	if err != nil {
		return err
	}
	got, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		v.addf(v.opts.RegistrationPath, "differs from the closure's registration: %s", firstDifference(got, want))
	}
	return nil
}

// compareFile compares a --files entry's contents with the source.
func (v *verifier) compareFile(s *ContentStream, fc fileCheck) error {
	in := fc.e.Inode
	if in.IsSymlink() {
		got, err := v.target(in, s)
		if err != nil {
			return err
		}
		want, err := os.Readlink(fc.src)
		if err != nil {
			v.addf(fc.e.Path, "reading the source: %v", err)
		} else if got != want {
			v.addf(fc.e.Path, "symlink target %s, the source has %s", quote(got), quote(want))
		}
		return nil
	}
	r, err := s.Next()
	if err != nil {
		return err
	}
	return v.compareWithSource(fc.e.Path, fc.src, r)
}

// compareWithSource compares the image's bytes of p (from r, which it reads
// to the end) with the source file src, streaming.
func (v *verifier) compareWithSource(p, src string, r io.Reader) error {
	fr := &failingReader{r: r}
	f, err := os.Open(src)
	if err != nil {
		v.addf(p, "reading the source: %v", err)
		_, err := io.Copy(io.Discard, fr)
		return err
	}
	defer f.Close()
	eq, err := sameContent(f, fr)
	if fr.err != nil {
		return fr.err
	}
	if _, err := io.Copy(io.Discard, fr); err != nil {
		return err
	}
	switch {
	case err != nil:
		v.addf(p, "cannot compare with the source %s: %v", src, err)
	case !eq:
		v.addf(p, "content differs from %s", src)
	}
	return nil
}

// sameContent compares two streams byte for byte.
func sameContent(a, b io.Reader) (bool, error) {
	bufA, bufB := make([]byte, 1<<16), make([]byte, 1<<16)
	for {
		na, errA := io.ReadFull(a, bufA)
		nb, errB := io.ReadFull(b, bufB)
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

// nameContentDifferences compares the store paths whose NAR differs with
// the source, entry by entry, to name what differs: names missing or extra,
// file contents, symlink targets (types and modes are checkStoreEntry's).
// Without a source it does nothing: the NAR hash difference stands alone.
func (v *verifier) nameContentDifferences(ctx context.Context, storePaths []string) error {
	type fileCmp struct{ p, src string }
	var cmps []fileCmp
	var inos []uint32
	var sizes []uint64
	for _, sp := range storePaths {
		if _, ok := v.sourceMode(sp); !ok {
			continue
		}
		for _, e := range v.entriesOf(sp) {
			src := filepath.Join(v.opts.Source, filepath.FromSlash(e.Path))
			var st syscall.Stat_t
			if err := syscall.Lstat(src, &st); err != nil || st.Mode&modeTypeMask != e.Inode.Mode&modeTypeMask {
				continue // missing from the source, or another type: reported elsewhere
			}
			switch {
			case e.Inode.IsDir():
				v.compareNames(e, src)
			case e.Inode.IsSymlink():
				got, ok := e.Inode.Target, e.Inode.HasTarget
				if !ok {
					got, ok = v.targets[e.Inode]
				}
				want, err := os.Readlink(src)
				if ok && err == nil && got != want {
					v.addf(e.Path, "symlink target %s, the source has %s", quote(got), quote(want))
				}
			case e.Inode.IsRegular():
				cmps = append(cmps, fileCmp{e.Path, src})
				inos = append(inos, e.Inode.Ino)
				sizes = append(sizes, e.Inode.Size)
			}
		}
	}
	if len(cmps) == 0 {
		return nil
	}
	s, err := StreamContents(ctx, v.image, v.opts.Tools, inos, sizes)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	var streamErr error
	for _, c := range cmps {
		r, err := s.Next()
		if err == nil {
			err = v.compareWithSource(c.p, c.src, r)
		}
		if err != nil {
			streamErr = err
			break
		}
	}
	if err := s.Close(); err != nil && streamErr == nil {
		streamErr = err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if streamErr != nil {
		v.addf("", "comparing contents with the source stopped: %v", streamErr)
	}
	return nil
}

// compareNames reports names only in the source or only in the image.
func (v *verifier) compareNames(e *Entry, src string) {
	names, err := readNames(src)
	if err != nil {
		v.addf(e.Path, "reading the source: %v", err)
		return
	}
	inSrc := map[string]bool{}
	for _, n := range names {
		inSrc[n] = true
		c := joinPath(e.Path, n)
		if v.tree.Lookup(c) == nil {
			var st syscall.Stat_t
			_ = syscall.Lstat(filepath.Join(src, n), &st)
			v.addf(c, "missing (the source has a %s)", typeName(st.Mode))
		}
	}
	for _, n := range e.Children {
		if !inSrc[n] {
			c := joinPath(e.Path, n)
			v.addf(c, "extra entry (a %s the source does not have)", v.tree.Lookup(c).Inode.TypeName())
		}
	}
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
