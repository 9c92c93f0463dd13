package closure_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/nar"

	"github.com/mkext4fs/mkext4fs/pkg/closure"
)

// goNixNAR serializes the tree at root with go-nix's writer.
func goNixNAR(t *testing.T, root string) []byte {
	t.Helper()
	var buf bytes.Buffer
	nw, err := nar.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	// WalkDir visits names in lexical (bytewise) order, as NAR wants.
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		hdr := &nar.Header{Path: "/"}
		if rel, _ := filepath.Rel(root, p); rel != "." {
			hdr.Path = "/" + rel
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			hdr.Type = nar.TypeSymlink
			if hdr.LinkTarget, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.IsDir():
			hdr.Type = nar.TypeDirectory
		default:
			hdr.Type, hdr.Size, hdr.Executable = nar.TypeRegular, fi.Size(), fi.Mode()&0o100 != 0
		}
		if err := nw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Type == nar.TypeRegular {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = nw.Write(data)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestNarEncoderMatchesGoNix: the encoder writes go-nix's bytes exactly,
// for trees, a single file and a single symlink.
func TestNarEncoderMatchesGoNix(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	base := t.TempDir()
	var roots []string
	for i := 0; i < 20; i++ {
		root := filepath.Join(base, "tree", string(rune('a'+i)))
		if err := os.MkdirAll(filepath.Dir(root), 0o755); err != nil {
			t.Fatal(err)
		}
		// go-nix's writer fails on names starting with "..".
		var names []string
		for _, n := range trickyNames {
			if !strings.HasPrefix(n, "..") {
				names = append(names, n)
			}
		}
		randomTreeOf(t, rng, root, 0, names)
		roots = append(roots, root)
	}
	for _, f := range []struct {
		name string
		mode os.FileMode
		size int
	}{{"empty", 0o444, 0}, {"exe", 0o555, 13}, {"eight", 0o444, 8}} {
		p := filepath.Join(base, f.name)
		if err := os.WriteFile(p, bytes.Repeat([]byte{'x'}, f.size), f.mode); err != nil {
			t.Fatal(err)
		}
		roots = append(roots, p)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink("/nix/store/target", link); err != nil {
		t.Fatal(err)
	}
	roots = append(roots, link)
	// Deeper than the hasher holds descriptors for (it then looks up
	// whole paths), with a file and a symlink on every level.
	deep := filepath.Join(base, "deep")
	for i, d := 0, deep; i < 45; i, d = i+1, filepath.Join(d, "level") {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "f"), []byte(strings.Repeat("d", i)), 0o444); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(strings.Repeat("../", i%3)+"f", filepath.Join(d, "l")); err != nil {
			t.Fatal(err)
		}
	}
	roots = append(roots, deep)
	// More entries than one read of the directory returns.
	wide := filepath.Join(base, "wide")
	if err := os.Mkdir(wide, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3000; i++ {
		name := filepath.Join(wide, fmt.Sprintf("entry-with-a-longish-name-%05d", (i*7919)%3000))
		if err := os.WriteFile(name, []byte(name), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	roots = append(roots, wide)
	for _, root := range roots {
		got, err := closure.EncodeNAR(root)
		if err != nil {
			t.Fatal(err)
		}
		want := goNixNAR(t, root)
		if !bytes.Equal(got, want) {
			n := 0
			for n < len(got) && n < len(want) && got[n] == want[n] {
				n++
			}
			t.Errorf("%s: NAR of %d bytes differs from go-nix's (%d bytes) from byte %d on", root, len(got), len(want), n)
		}
	}
}
