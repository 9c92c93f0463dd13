package closure

import (
	"strings"
	"testing"
)

// checkParsed holds for whatever Parse accepts: sorted unique valid paths,
// sorted unique valid references, normalized hashes.
func checkParsed(t *testing.T, paths []Path, opts Options) {
	t.Helper()
	storeDir, _ := opts.storeDir()
	for i, p := range paths {
		if err := checkStorePath(storeDir, p.Path); err != nil {
			t.Fatalf("accepted an invalid path: %v", err)
		}
		if i > 0 && paths[i-1].Path >= p.Path {
			t.Fatalf("paths not sorted and unique: %q then %q", paths[i-1].Path, p.Path)
		}
		for j, r := range p.References {
			if err := checkStorePath(storeDir, r); err != nil {
				t.Fatalf("accepted an invalid reference: %v", err)
			}
			if j > 0 && p.References[j-1] >= r {
				t.Fatalf("references not sorted and unique: %q", p.References)
			}
		}
		if p.NarHash != "" && (!strings.HasPrefix(p.NarHash, "sha256:") || len(p.NarHash) != len(emptyBase32)) {
			t.Fatalf("narHash not normalized: %q", p.NarHash)
		}
	}
}

func FuzzParseText(f *testing.F) {
	f.Add(textGood, "")
	for _, c := range textBad {
		f.Add(c.input, c.opts.StoreDir)
	}
	f.Fuzz(func(t *testing.T, input, storeDir string) {
		opts := Options{StoreDir: storeDir}
		if _, err := opts.storeDir(); err != nil {
			opts.StoreDir = ""
		}
		paths, err := Parse(strings.NewReader(input), "fuzz", opts)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if len(paths) == 0 {
			t.Fatal("no error and no paths")
		}
		checkParsed(t, paths, opts)
	})
}

func FuzzParseJSON(f *testing.F) {
	f.Add(jsonGood, "")
	f.Add(jsonGood, "other")
	for _, c := range jsonBad {
		f.Add(c.input, c.opts.AttrsKey)
	}
	f.Fuzz(func(t *testing.T, input, attrsKey string) {
		opts := Options{AttrsKey: attrsKey}
		paths, err := Parse(strings.NewReader(input), "fuzz", opts)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if len(paths) == 0 {
			t.Fatal("no error and no paths")
		}
		checkParsed(t, paths, opts)
	})
}
