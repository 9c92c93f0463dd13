package e2fs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mkext4fs/mkext4fs/pkg/debugfsgen"
)

func TestParseLeafExtent(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Extent
		ok   bool
	}{
		{" 0/ 0   1/  1     0 -    73  7332 -  7405     74 Uninit", Extent{0, 7332, 74, true, 0, 0}, true},
		{" 0/ 0   2/  2     1 -    73  7333 -  7405     73 ", Extent{1, 7333, 73, false, 0, 1}, true},
		{" 1/ 1   7/  7    60 -    69  7837 -  7846     10 Uninit", Extent{60, 7837, 10, true, 1, 6}, true},
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
	inodes, extents := runCollecting(t, r, image, []string{
		"write " + empty + " big", "fallocate big 0 99", "sif big size 409000", "ex -l big",
		"mkdir d", "write " + empty + " d/small", "ex -l d/small",
	})
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
	_, marked := runCollecting(t, r, image, mark)
	after := marked[len(mark)-1]
	if want := []Extent{{0, big[0].Physical, 100, false, 0, 0}}; !reflect.DeepEqual(after, want) {
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

// TestMarkInitialized: the marks debugfsgen writes, for extents in the
// inode (sif on i_block) and in a tree of depth 1 (extent mode), leave
// every extent initialised and the filesystem clean.
func TestMarkInitialized(t *testing.T) {
	r := newRunner(t)
	image := newImage(t, r)
	empty, filler := hostFiles(t)
	// "small" in two extents of the inode; "fragmented" in six, which
	// need a tree of depth 1: other files take the blocks in between.
	lines := []string{"write " + empty + " small", "fallocate small 0 9", "write " + filler + " f", "fallocate small 10 19", "sif small size 81920",
		"write " + empty + " fragmented"}
	for i := 0; i < 6; i++ {
		lines = append(lines, fmt.Sprintf("fallocate fragmented %d %d", i*10, i*10+9), fmt.Sprintf("write %s f%d", filler, i))
	}
	lines = append(lines, "sif fragmented size 245760", "ex -l small", "ex -l fragmented")
	inodes, extents := runCollecting(t, r, image, lines)
	small, fragmented := extents[len(lines)-2], extents[len(lines)-1]
	if len(small) != 2 || small[0].Depth != 0 || len(fragmented) != 6 || fragmented[0].Depth != 1 {
		t.Fatalf("extents: small %+v, fragmented %+v", small, fragmented)
	}
	var marks []string
	for _, f := range []struct {
		ino uint64
		ext []Extent
	}{{inodes[0], small}, {inodes[5], fragmented}} {
		m, err := debugfsgen.MarkInitialized(f.ino, asDebugfsgen(f.ext))
		if err != nil {
			t.Fatal(err)
		}
		marks = append(marks, m...)
	}
	if !strings.HasPrefix(marks[0], "sif ") || !strings.Contains(strings.Join(marks, "\n"), "replace_node") {
		t.Fatalf("want both forms of marks: %q", marks)
	}
	marks = append(marks, "ex -l small", "ex -l fragmented")
	_, after := runCollecting(t, r, image, marks)
	for i, e := range append(after[len(marks)-2], after[len(marks)-1]...) {
		if e.Uninit {
			t.Errorf("extent %d still uninitialised: %+v", i, e)
		}
	}
	if len(after[len(marks)-2])+len(after[len(marks)-1]) != 8 {
		t.Errorf("extents after marking: %+v", after)
	}
	if err := r.Check(context.Background(), image); err != nil {
		t.Fatal(err)
	}
}

// TestPlace: Place moves the blocks of a file allocated from block 0 on
// to the places of its runs, in the inode and in a tree of depth 1, and
// the filesystem stays clean.
func TestPlace(t *testing.T) {
	r := newRunner(t)
	image := newImage(t, r)
	empty, filler := hostFiles(t)
	// "one" in a single extent; "six" in six (a tree of depth 1).
	lines := []string{"write " + empty + " one", "fallocate one 0 59", "write " + empty + " six"}
	for i := 0; i < 6; i++ {
		lines = append(lines, fmt.Sprintf("fallocate six %d %d", i*10, i*10+9), fmt.Sprintf("write %s f%d", filler, i))
	}
	lines = append(lines, "sif one size 400000", "sif six size 400000", "ex -l one", "ex -l six")
	inodes, extents := runCollecting(t, r, image, lines)
	// Runs of 25 and 35 blocks at blocks 3 and 50.
	runs := [][2]uint64{{3, 25}, {50, 35}}
	var places []string
	want := map[uint64][]Extent{}
	for _, f := range []struct {
		ino uint64
		ext []Extent
	}{{inodes[0], extents[len(lines)-2]}, {inodes[2], extents[len(lines)-1]}} {
		var to []debugfsgen.Extent
		run, in := 0, uint64(0)
		for _, e := range f.ext {
			for done := uint64(0); done < e.Len; {
				k := min(runs[run][1]-in, e.Len-done)
				to = append(to, debugfsgen.Extent{Logical: runs[run][0] + in, Physical: e.Physical + done, Len: k})
				want[f.ino] = append(want[f.ino], Extent{Logical: runs[run][0] + in, Physical: e.Physical + done, Len: k})
				done, in = done+k, in+k
				if in == runs[run][1] {
					run, in = run+1, 0
				}
			}
		}
		p, err := debugfsgen.Place(f.ino, asDebugfsgen(f.ext), to)
		if err != nil {
			t.Fatal(err)
		}
		places = append(places, p...)
	}
	places = append(places, fmt.Sprintf("ex -l <%d>", inodes[0]), fmt.Sprintf("ex -l <%d>", inodes[2]))
	_, placed := runCollecting(t, r, image, places)
	got := map[uint64][]Extent{}
	for i, ino := range map[int]uint64{len(places) - 2: inodes[0], len(places) - 1: inodes[2]} {
		for _, x := range placed[i] {
			got[ino] = append(got[ino], Extent{Logical: x.Logical, Physical: x.Physical, Len: x.Len, Uninit: x.Uninit})
		}
	}
	for ino, w := range want {
		if !reflect.DeepEqual(got[ino], w) {
			t.Errorf("inode %d: extents %+v, want %+v", ino, got[ino], w)
		}
	}
	if err := r.Check(context.Background(), image); err != nil {
		t.Fatal(err)
	}
}

// hostFiles makes an empty file and a file of one byte to write into
// images.
func hostFiles(t *testing.T) (empty, filler string) {
	t.Helper()
	dir := t.TempDir()
	empty, filler = filepath.Join(dir, "empty"), filepath.Join(dir, "filler")
	if err := os.WriteFile(empty, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filler, []byte("x"), 0o444); err != nil {
		t.Fatal(err)
	}
	return empty, filler
}

// runCollecting runs lines with debugfs on image and returns, by line, the
// inode each write reported and the extents each "ex -l" listed.
func runCollecting(t *testing.T, r *Runner, image string, lines []string) (map[int]uint64, map[int][]Extent) {
	t.Helper()
	inodes := map[int]uint64{}
	extents := map[int][]Extent{}
	s := &DebugfsScript{Lines: lines,
		Inode:   func(i int, ino uint64) { inodes[i] = ino },
		Extents: func(i int, e []Extent) { extents[i] = e }}
	if err := r.RunDebugfs(context.Background(), image, s); err != nil {
		t.Fatal(err)
	}
	return inodes, extents
}

// asDebugfsgen is internal/build's conversion of the extents debugfs lists
// to pkg/debugfsgen's (which this package cannot import outside tests).
func asDebugfsgen(ext []Extent) []debugfsgen.Extent {
	out := make([]debugfsgen.Extent, len(ext))
	for i, e := range ext {
		out[i] = debugfsgen.Extent{Logical: e.Logical, Physical: e.Physical, Len: e.Len, Uninit: e.Uninit, Slot: -1}
		if e.Depth == 0 {
			out[i].Slot = e.Entry
		}
	}
	return out
}
