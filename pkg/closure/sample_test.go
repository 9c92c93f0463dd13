package closure_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"

	"github.com/mkext4fs/mkext4fs/internal/nixtest"
	"github.com/mkext4fs/mkext4fs/pkg/closure"
)

const sampleDir = "../../testdata/sample"

// The sample shipped in the repository matches the hashes Nix wrote into
// its .attrs.json, and its text graph gives the same closure.
func TestSampleVerifies(t *testing.T) {
	root := filepath.Join(sampleDir, "root")
	js := load(t, []string{filepath.Join(sampleDir, ".attrs.json")}, closure.Options{})
	if err := js.Hash(context.Background(), closure.HashOptions{Root: root, Verify: true}); err != nil {
		t.Fatalf("the sample does not match its .attrs.json: %v", err)
	}
	text := load(t, []string{filepath.Join(sampleDir, "closure")}, closure.Options{})
	if err := text.Hash(context.Background(), closure.HashOptions{Root: root}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(text.Paths, js.Paths) {
		t.Errorf("text graph with computed hashes:\n%+v\nJSON graph:\n%+v", text.Paths, js.Paths)
	}
	if len(js.Paths) != 3 {
		t.Errorf("the sample has %d store paths, want 3", len(js.Paths))
	}
}

// Regenerating the sample with real Nix gives what the repository holds.
func TestSampleUpToDate(t *testing.T) {
	nixtest.New(t) // Nix is there, and so is root
	if runtime.GOARCH != "amd64" {
		t.Skip("the sample is built for x86_64-linux")
	}
	out := t.TempDir()
	cmd := exec.Command("bash", filepath.Join(sampleDir, "regenerate.sh"), out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("regenerate.sh: %v\n%s", err, b)
	}
	for _, name := range []string{"closure", ".attrs.json"} {
		want, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(sampleDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("testdata/sample/%s differs from what regenerate.sh writes:\n%s\n---\n%s", name, got, want)
		}
	}
	got, want := describeTree(t, filepath.Join(sampleDir, "root")), describeTree(t, filepath.Join(out, "root"))
	if !reflect.DeepEqual(got, want) {
		t.Errorf("testdata/sample/root differs from what regenerate.sh writes (run it to update):\n got %q\nwant %q", got, want)
	}
}

// describeTree lists what git keeps of a tree: type, executable bit,
// content or symlink target, per path.
func describeTree(t *testing.T, root string) map[string]string {
	t.Helper()
	entries := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			entries[rel] = "symlink " + target
			return err
		case d.IsDir():
			entries[rel] = "dir"
		default:
			data, err := os.ReadFile(p)
			kind := "file "
			if info.Mode()&0o100 != 0 {
				kind = "executable "
			}
			entries[rel] = kind + string(data)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return entries
}
