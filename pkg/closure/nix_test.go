package closure_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mkext4fs/mkext4fs/internal/nixtest"
	"github.com/mkext4fs/mkext4fs/pkg/closure"
)

// fixture builds the shared test closure with real Nix.
func fixture(t *testing.T) (*nixtest.Nix, *nixtest.Fixture) {
	t.Helper()
	n := nixtest.New(t)
	return n, nixtest.BuildFixture(t, n)
}

func load(t *testing.T, files []string, opts closure.Options) *closure.Closure {
	t.Helper()
	c, err := closure.Load(files, opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Our closure of Nix's graph files is the one nix-store -qR reports, with
// the references nix-store -q --references reports, in both forms.
func TestClosureMatchesNix(t *testing.T) {
	n, f := fixture(t)
	want := n.Requisites(t, f.Roots...)
	for _, tt := range []struct {
		name  string
		files []string
		opts  closure.Options
	}{
		{"text", f.TextGraphs, closure.Options{}},
		{"json", []string{f.JSONGraph}, closure.Options{}},
		{"both", append([]string{f.JSONGraph}, f.TextGraphs...), closure.Options{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := load(t, tt.files, tt.opts)
			if got := c.PathNames(); !reflect.DeepEqual(got, want) {
				t.Fatalf("closure\n got %q\nwant %q (nix-store -qR)", got, want)
			}
			for _, p := range c.Paths {
				if want := n.References(t, p.Path); !reflect.DeepEqual(p.References, want) {
					t.Errorf("%s: references %q, nix-store says %q", p.Path, p.References, want)
				}
			}
		})
	}
	// One root at a time, in each form.
	for i, root := range f.Roots {
		want := n.Requisites(t, root)
		key := strings.TrimPrefix(filepath.Base(f.TextGraphs[i]), "closure-")
		if got := load(t, f.TextGraphs[i:i+1], closure.Options{}).PathNames(); !reflect.DeepEqual(got, want) {
			t.Errorf("text graph of %s: %q, nix-store -qR: %q", root, got, want)
		}
		if got := load(t, []string{f.JSONGraph}, closure.Options{AttrsKey: key}).PathNames(); !reflect.DeepEqual(got, want) {
			t.Errorf("JSON graph %q: %q, nix-store -qR: %q", key, got, want)
		}
	}
}

// The NAR hashes and sizes we compute are the ones Nix recorded in its
// database and wrote into .attrs.json.
func TestHashMatchesNix(t *testing.T) {
	n, f := fixture(t)
	c := load(t, f.TextGraphs, closure.Options{})
	for _, p := range c.Paths {
		if p.HasNar() {
			t.Fatalf("%s: the text form carries no hashes, got %s", p.Path, p.NarHash)
		}
	}
	if err := c.Hash(context.Background(), closure.HashOptions{}); err != nil {
		t.Fatal(err)
	}
	fromJSON := load(t, []string{f.JSONGraph}, closure.Options{})
	for i, p := range c.Paths {
		hash, size := n.NarHash(t, p.Path)
		if p.NarHash != hash || p.NarSize != size {
			t.Errorf("%s: computed %s %d, nix-store -q --hash/--size: %s %d", p.Path, p.NarHash, p.NarSize, hash, size)
		}
		j := fromJSON.Paths[i]
		if p.NarHash != j.NarHash || p.NarSize != j.NarSize {
			t.Errorf("%s: computed %s %d, .attrs.json: %s %d", p.Path, p.NarHash, p.NarSize, j.NarHash, j.NarSize)
		}
	}
}

// copyClosure copies the store paths into root/nix/store, writable, so a
// test can damage them.
func copyClosure(t *testing.T, paths []string) string {
	t.Helper()
	root := t.TempDir()
	store := filepath.Join(root, "nix", "store")
	if err := os.MkdirAll(store, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if out, err := exec.Command("cp", "-a", "--", p, store+"/").CombinedOutput(); err != nil {
			t.Fatalf("cp -a %s: %v\n%s", p, err, out)
		}
	}
	if out, err := exec.Command("chmod", "-R", "u+w", store).CombinedOutput(); err != nil {
		t.Fatalf("chmod: %v\n%s", err, out)
	}
	return root
}

// The hashes of a JSON graph are checked against the files: a copy under
// --root passes, a copy with one byte changed fails and names the path.
func TestVerify(t *testing.T) {
	_, f := fixture(t)
	c := load(t, []string{f.JSONGraph}, closure.Options{})
	root := copyClosure(t, c.PathNames())
	ctx := context.Background()
	if err := c.Hash(ctx, closure.HashOptions{Root: root, Verify: true}); err != nil {
		t.Fatalf("verifying an intact copy: %v", err)
	}

	lib := f.Paths["lib"]
	deep := filepath.Join(root, lib, "a/b/c/deep")
	if err := os.WriteFile(deep, []byte("DEEP\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	c = load(t, []string{f.JSONGraph}, closure.Options{})
	err := c.Hash(ctx, closure.HashOptions{Root: root, Verify: true})
	if err == nil || !strings.HasPrefix(err.Error(), lib+": the files at "+filepath.Join(root, lib)+" do not match the graph") {
		t.Fatalf("verifying a damaged copy: %v", err)
	}
	// Without Verify the graph is trusted and nothing is read.
	c = load(t, []string{f.JSONGraph}, closure.Options{})
	if err := c.Hash(ctx, closure.HashOptions{Root: filepath.Join(root, "nowhere")}); err != nil {
		t.Fatalf("without Verify: %v", err)
	}

	// An executable bit is part of the NAR too.
	if err := os.WriteFile(deep, []byte("deep\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, lib, "bin/run"), 0o444); err != nil {
		t.Fatal(err)
	}
	c = load(t, []string{f.JSONGraph}, closure.Options{})
	if err := c.Hash(ctx, closure.HashOptions{Root: root, Verify: true}); err == nil || !strings.HasPrefix(err.Error(), lib+":") {
		t.Fatalf("verifying a copy that lost an executable bit: %v", err)
	}
}

// nix-store --load-db takes our registration, and nix-store --verify
// --check-contents, which re-hashes every path, agrees with it; with one
// hash character changed it does not.
func TestRegistrationAcceptedByNix(t *testing.T) {
	n, f := fixture(t)
	for _, tt := range []struct {
		name  string
		files []string
	}{
		{"computed from the text form", f.TextGraphs},
		{"verified from the JSON form", []string{f.JSONGraph}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := load(t, tt.files, closure.Options{})
			if err := c.Hash(context.Background(), closure.HashOptions{Verify: true}); err != nil {
				t.Fatal(err)
			}
			var reg bytes.Buffer
			if err := c.WriteRegistration(&reg); err != nil {
				t.Fatal(err)
			}
			if err := n.CheckRegistration(t, reg.Bytes(), "/", c.PathNames()); err != nil {
				t.Fatalf("Nix rejects the registration: %v\n%s", err, reg.String())
			}

			bad := flipHashChar(t, reg.Bytes(), f.Paths["lib"])
			err := n.CheckRegistration(t, bad, "/", c.PathNames())
			if err == nil || !strings.Contains(err.Error(), "was modified") {
				t.Fatalf("Nix accepted a registration with a wrong hash: %v", err)
			}
		})
	}
}

// flipHashChar changes the last character of the hash of path in a
// registration to another nix-base32 digit.
func flipHashChar(t *testing.T, reg []byte, path string) []byte {
	t.Helper()
	ls := strings.Split(string(reg), "\n")
	for i, l := range ls {
		if l == path && i+1 < len(ls) && strings.HasPrefix(ls[i+1], "sha256:") {
			h := []byte(ls[i+1])
			last := &h[len(h)-1]
			if *last == '0' {
				*last = '1'
			} else {
				*last = '0'
			}
			ls[i+1] = string(h)
			return []byte(strings.Join(ls, "\n"))
		}
	}
	t.Fatalf("%s not in the registration", path)
	return nil
}

// A graph entry with a hash but NAR size 0, as stores registered by old
// tools give, gets its size from the files, and its hash is checked on the
// way even without Verify.
func TestHashFillsZeroSize(t *testing.T) {
	n, f := fixture(t)
	data, err := os.ReadFile(f.JSONGraph)
	if err != nil {
		t.Fatal(err)
	}
	var attrs map[string]any
	if err := json.Unmarshal(data, &attrs); err != nil {
		t.Fatal(err)
	}
	for _, e := range attrs["app"].([]any) {
		e.(map[string]any)["narSize"] = 0
	}
	zeroed, err := json.Marshal(attrs)
	if err != nil {
		t.Fatal(err)
	}
	graph := filepath.Join(t.TempDir(), "attrs.json")
	if err := os.WriteFile(graph, zeroed, 0o644); err != nil {
		t.Fatal(err)
	}
	c := load(t, []string{graph}, closure.Options{AttrsKey: "app"})
	if err := c.Hash(context.Background(), closure.HashOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Paths {
		if hash, size := n.NarHash(t, p.Path); p.NarHash != hash || p.NarSize != size {
			t.Errorf("%s: %s %d, nix-store: %s %d", p.Path, p.NarHash, p.NarSize, hash, size)
		}
	}

	c = load(t, []string{graph}, closure.Options{AttrsKey: "app"})
	c.Paths[0].NarHash = "sha256:" + strings.Repeat("0", 52)
	if err := c.Hash(context.Background(), closure.HashOptions{}); err == nil || !strings.Contains(err.Error(), "do not match the graph") {
		t.Errorf("a wrong hash with size 0: %v", err)
	}
}
