package nixtest

import (
	"strings"
	"testing"
)

func TestFixtureBuilds(t *testing.T) {
	n := New(t)
	f := BuildFixture(t, n)
	closure := n.Requisites(t, f.Roots...)
	for _, name := range []string{"data", "exe", "link", "lib", "app"} {
		found := false
		for _, p := range closure {
			found = found || p == f.Paths[name]
		}
		if !found {
			t.Errorf("%s (%s) is not in the closure of the roots %q", name, f.Paths[name], closure)
		}
	}
	refs := n.References(t, f.Paths["lib"])
	if strings.Join(refs, " ") != strings.Join(sortedPair(f.Paths["data"], f.Paths["lib"]), " ") {
		t.Errorf("lib references %q, want data and itself", refs)
	}
}

func sortedPair(a, b string) []string {
	if a > b {
		a, b = b, a
	}
	return []string{a, b}
}
