package e2fs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestParseLeafExtent(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Extent
		ok   bool
	}{
		{" 0/ 0   1/  1     0 -    73  7332 -  7405     74 Uninit", Extent{0, 7332, 74, true}, true},
		{" 0/ 0   2/  2     1 -    73  7333 -  7405     73 ", Extent{1, 7333, 73, false}, true},
		{" 1/ 1   7/  7    60 -    69  7837 -  7846     10 Uninit", Extent{60, 7837, 10, true}, true},
		// An index node (level above the depth) is not a leaf.
		{" 0/ 1   1/  1     0 -    69  7678             70", Extent{}, false},
		// Ranges that disagree with the length.
		{" 0/ 0   1/  1     0 -    73  7332 -  7405     75 Uninit", Extent{}, false},
		{" 0/ 0   1/  1     0 -    72  7332 -  7405     74 Uninit", Extent{}, false},
		{" 0/ 0   1/  1     0 -    73  7332 -  7405     74 Unwritten", Extent{}, false},
	} {
		got, ok := parseLeafExtent(tc.line)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseLeafExtent(%q) = %+v, %v; want %+v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}

// TestBulkCommands runs what a bulk file takes with the real debugfs: the
// inode and the extents come back through the hooks, the marks pass the
// checker, and a mark that leaves an extent uninitialised does not.
func TestBulkCommands(t *testing.T) {
	r := newRunner(t)
	image := newImage(t, r)
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	var (
		inodes  = map[int]uint64{}
		extents = map[int][]Extent{}
	)
	s := &DebugfsScript{
		Lines: []string{
			"write " + empty + " big", "fallocate big 0 99", "sif big size 409000", "ex -l big",
			"mkdir d", "write " + empty + " d/small", "ex -l d/small",
		},
		Inode:   func(i int, ino uint64) { inodes[i] = ino },
		Extents: func(i int, e []Extent) { extents[i] = e },
	}
	if err := r.RunDebugfs(context.Background(), image, s); err != nil {
		t.Fatal(err)
	}
	if len(inodes) != 2 || inodes[0] == 0 || inodes[5] == 0 {
		t.Fatalf("inodes %v, want lines 0 and 5", inodes)
	}
	big := extents[3]
	if len(big) != 1 || big[0].Logical != 0 || big[0].Len != 100 || !big[0].Uninit {
		t.Fatalf("extents of big: %+v", big)
	}
	if e, ok := extents[6]; !ok || len(e) != 0 {
		t.Fatalf("extents of an empty file: %+v, %v", e, ok)
	}

	mark := []string{
		fmt.Sprintf("extent_open <%d>", inodes[0]),
		fmt.Sprintf("goto_block %d", 0),
		fmt.Sprintf("replace_node 0 100 %d", big[0].Physical),
		"extent_close", "ex -l big",
	}
	var after []Extent
	s = &DebugfsScript{Lines: mark, Extents: func(i int, e []Extent) { after = e }}
	if err := r.RunDebugfs(context.Background(), image, s); err != nil {
		t.Fatal(err)
	}
	if want := []Extent{{0, big[0].Physical, 100, false}}; !reflect.DeepEqual(after, want) {
		t.Fatalf("after marking: %+v, want %+v", after, want)
	}
	if err := r.Check(context.Background(), image); err != nil {
		t.Fatal(err)
	}

	// Marked uninitialised again: the checker refuses what replace_node
	// printed.
	bad := []string{
		fmt.Sprintf("extent_open <%d>", inodes[0]), "goto_block 0",
		fmt.Sprintf("replace_node --uninit 0 100 %d", big[0].Physical), "extent_close",
	}
	err := r.Debugfs(context.Background(), image, bad, nil)
	var de *DebugfsError
	if !errors.As(err, &de) || de.Line != 3 {
		t.Fatalf("got %v, want an error on line 3", err)
	}
}
