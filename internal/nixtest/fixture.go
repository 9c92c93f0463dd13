package nixtest

import (
	_ "embed"
	"os"
	"path/filepath"
	"testing"
)

//go:embed fixture.nix
var fixtureNix []byte

// Fixture is the set of store paths fixture.nix builds.
type Fixture struct {
	// Paths maps the names in fixture.nix (data, exe, link, lib, app) to
	// their store paths.
	Paths map[string]string
	// Roots are the closure roots the graphs were exported for: app, link
	// and exe.
	Roots []string
	// TextGraphs are the text-form graph files, one per root, as Nix wrote
	// them (copied into a store path).
	TextGraphs []string
	// JSONGraph is the .attrs.json holding the structured graphs of all
	// roots, under the keys app, link and exe.
	JSONGraph string
}

// BuildFixture builds fixture.nix with real Nix. The builds are cached in
// the store, so only the first test on a machine pays for them.
func BuildFixture(t testing.TB, n *Nix) *Fixture {
	t.Helper()
	file := filepath.Join(t.TempDir(), "fixture.nix")
	if err := os.WriteFile(file, fixtureNix, 0o644); err != nil {
		t.Fatal(err)
	}
	names := []string{"data", "exe", "link", "lib", "app", "graphText", "graphJSON"}
	out := n.Build(t, file, names...)
	if len(out) != len(names) {
		t.Fatalf("nix-build printed %d paths for %d attributes: %q", len(out), len(names), out)
	}
	f := &Fixture{Paths: map[string]string{}}
	for i, name := range names[:5] {
		f.Paths[name] = out[i]
	}
	f.Roots = []string{f.Paths["app"], f.Paths["link"], f.Paths["exe"]}
	for _, g := range []string{"closure-app", "closure-link", "closure-exe"} {
		f.TextGraphs = append(f.TextGraphs, filepath.Join(out[5], g))
	}
	f.JSONGraph = filepath.Join(out[6], "attrs.json")
	return f
}
