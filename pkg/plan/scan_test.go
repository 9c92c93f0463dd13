package plan

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkext4fs/mkext4fs/internal/testutil"
)

// layoutFile writes a file from a layout: byte pairs (op, n) of data,
// written zeros, or holes, in lengths that are rarely whole blocks.
func layoutFile(p string, layout []byte) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	defer f.Close()
	var off int64
	for i := 0; i+1 < len(layout) && off < 64<<20; i += 2 {
		n := int64(layout[i+1])
		switch layout[i] % 3 {
		case 0:
			data := bytes.Repeat([]byte{layout[i] | 1}, int(n*97+1))
			if _, err := f.WriteAt(data, off); err != nil {
				return err
			}
			off += int64(len(data))
		case 1:
			zeros := make([]byte, n*131+1)
			if _, err := f.WriteAt(zeros, off); err != nil {
				return err
			}
			off += int64(len(zeros))
		case 2:
			off += n*BlockSize*3 + n%5*100
			if off > 64<<20 {
				off = 64 << 20
			}
			if err := f.Truncate(off); err != nil {
				return err
			}
		}
	}
	return nil
}

// countBlocks is the oracle: the 4 KiB blocks of the file that hold a
// byte other than zero, and the runs they form.
func countBlocks(p string) (blocks, runs int64, err error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return 0, 0, err
	}
	prev := false
	for off := 0; off < len(data); off += BlockSize {
		end := off + BlockSize
		if end > len(data) {
			end = len(data)
		}
		nonZero := bytes.IndexFunc(data[off:end], func(r rune) bool { return r != 0 }) >= 0
		if nonZero {
			blocks++
			if !prev {
				runs++
			}
		}
		prev = nonZero
	}
	return blocks, runs, nil
}

// scanLayout walks a store path holding one file of the layout and
// compares its planned blocks with the oracle, hashing (Optimise) and not,
// and reading small files later (DeferSmall, then Settle).
func scanLayout(t *testing.T, layout []byte) *Node {
	t.Helper()
	var file *Node
	for _, opts := range []Options{{}, {Optimise: true}, {DeferSmall: true}} {
		tree, p := walkStore(t, func(p string) error { return layoutFile(p, layout) }, opts)
		if err := tree.Settle(readSmall(t, tree)); err != nil {
			t.Fatal(err)
		}
		blocks, runs, err := countBlocks(p)
		if err != nil {
			t.Fatal(err)
		}
		n := tree.Store.Children()[0]
		if n.Blocks != blocks || n.Runs != runs {
			t.Fatalf("layout %v, %+v: planned %d blocks in %d runs, the file has %d in %d",
				layout, opts, n.Blocks, n.Runs, blocks, runs)
		}
		if need := tree.Need(Geometry{}); need.DataBlocks != blocks {
			t.Fatalf("Need has %d data blocks, want %d", need.DataBlocks, blocks)
		}
		file = n
	}
	return file
}

var layouts = [][]byte{
	nil,
	{0, 0},
	{1, 200},
	{0, 42, 2, 3, 0, 42},
	{2, 9, 0, 1},
	{0, 200, 1, 255, 1, 255, 0, 1, 2, 1},
	{1, 31, 0, 1, 1, 31, 0, 1},
	{0, 255, 0, 255, 2, 100, 1, 100},
	// More data in one run than the scanner reads at once (1 MiB).
	bytes.Repeat([]byte{0, 255}, 60),
	// Small files with blocks of zeros (DeferSmall leaves them unread).
	{1, 32, 0, 0},
	{0, 42, 1, 63, 0, 0},
}

// FuzzScan: the blocks and runs the walk plans for a file of data, written
// zeros and holes in any order are what the file holds.
func FuzzScan(f *testing.F) {
	for _, l := range layouts {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, layout []byte) {
		if len(layout) > 128 {
			layout = layout[:128]
		}
		scanLayout(t, layout)
	})
}

// TestScanMatchesDebugfs: the oracle of FuzzScan is what debugfs does:
// for files of many layouts, the blocks debugfs allocates when it writes
// them are the planned blocks.
func TestScanMatchesDebugfs(t *testing.T) {
	mke2fs := testutil.RequireTool(t, "mke2fs")
	debugfs := testutil.RequireTool(t, "debugfs")
	rng := rand.New(rand.NewSource(6))
	all := append([][]byte(nil), layouts...)
	for i := 0; i < 20; i++ {
		l := make([]byte, 2+2*rng.Intn(12))
		rng.Read(l)
		all = append(all, l)
	}
	image := filepath.Join(t.TempDir(), "image")
	if err := os.WriteFile(image, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(image, 1<<30); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mke2fs, "-q", "-F", "-t", "ext4", "-b", "4096", image).CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v: %s", err, out)
	}
	var script strings.Builder
	var planned []int64
	for i, l := range all {
		n := scanLayout(t, l)
		planned = append(planned, n.Blocks)
		fmt.Fprintf(&script, "write %s f%d\n", n.Host(), i)
	}
	cmd := exec.Command(debugfs, "-w", "-f", "-", image)
	cmd.Stdin = strings.NewReader(script.String())
	if out, err := cmd.CombinedOutput(); err != nil || strings.Count(string(out), "Allocated inode") != len(all) {
		t.Fatalf("debugfs: %v: %s", err, out)
	}
	for i := range all {
		// Data blocks only: "blocks" lists the blocks of the file's
		// content, not those of its extent tree.
		out, err := exec.Command(debugfs, "-R", fmt.Sprintf("blocks f%d", i), image).Output()
		if err != nil {
			t.Fatal(err)
		}
		if got := int64(len(strings.Fields(string(out)))); got != planned[i] {
			t.Errorf("layout %v: debugfs stored %d blocks, the plan has %d", all[i], got, planned[i])
		}
	}
}
