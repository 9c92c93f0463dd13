package imagecheck

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/mkext4fs/mkext4fs/pkg/imagecheck/imagechecktest"
)

func TestContentStream(t *testing.T) {
	f := imagechecktest.NewFixture(t, imagechecktest.Options{NewlineNames: true})
	img := f.MkfsImage(t)
	tree, err := Read(context.Background(), img, Tools{})
	if err != nil {
		t.Fatal(err)
	}
	tricky := tree.Lookup(imagechecktest.TopPath + "/share/tricky").Inode
	empty := tree.Lookup(imagechecktest.TopPath + "/share/empty").Inode
	hello := tree.Lookup(imagechecktest.TopPath + "/bin/hello").Inode
	want := map[uint32]string{
		tricky.Ino: "no newline at the end\ndebugfs: cat <2>\n# mkext4fs-00000000000000000000000000000000 1\nend",
		empty.Ino:  "",
		hello.Ino:  "#!/bin/sh\necho hello from " + imagechecktest.LibPath + "\n",
	}

	t.Run("contents in order", func(t *testing.T) {
		inos := []uint32{tricky.Ino, empty.Ino, hello.Ino, tricky.Ino}
		var sizes []uint64
		for _, ino := range inos {
			sizes = append(sizes, uint64(len(want[ino])))
		}
		s, err := StreamContents(context.Background(), img, Tools{}, inos, sizes)
		if err != nil {
			t.Fatal(err)
		}
		for i, ino := range inos {
			r, err := s.Next()
			if err != nil {
				t.Fatalf("item %d: %v", i, err)
			}
			if i == 1 {
				continue // unread: Next must skip it
			}
			got, err := io.ReadAll(r)
			if err != nil || string(got) != want[ino] {
				t.Errorf("inode %d: %q, %v; want %q", ino, got, err, want[ino])
			}
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})

	tests := []struct {
		name    string
		inos    []uint32
		sizes   []uint64
		wantErr string
	}{
		{"file shorter than its size", []uint32{hello.Ino, tricky.Ino}, []uint64{uint64(len(want[hello.Ino])) + 3, uint64(len(want[tricky.Ino]))}, "or the one before"},
		{"last file shorter than its size", []uint32{hello.Ino}, []uint64{uint64(len(want[hello.Ino])) + 3}, "gave"},
		{"file longer than its size", []uint32{hello.Ino}, []uint64{5}, "printed after the last file"},
		{"no such inode", []uint32{hello.Ino, 1 << 30}, []uint64{uint64(len(want[hello.Ino])), 0}, "printed after the last file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := StreamContents(context.Background(), img, Tools{}, tc.inos, tc.sizes)
			if err != nil {
				t.Fatal(err)
			}
			var firstErr error
			for range tc.inos {
				r, err := s.Next()
				if err == nil {
					_, err = io.ReadAll(r)
				}
				if err != nil {
					firstErr = err
					break
				}
			}
			if err := s.Close(); firstErr == nil {
				firstErr = err
			}
			if firstErr == nil || !strings.Contains(firstErr.Error(), tc.wantErr) {
				t.Errorf("error %v, want one containing %q", firstErr, tc.wantErr)
			}
		})
	}
}
