package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkext4fs/mkext4fs/internal/nixtest"
)

// The registration of Nix-built graphs, in both forms, is accepted by
// nix-store --load-db and --verify --check-contents.
func TestRegistrationCommand(t *testing.T) {
	n := nixtest.New(t)
	f := nixtest.BuildFixture(t, n)
	paths := n.Requisites(t, f.Roots...)

	fromText, errText, code := runClosureCLI(t, append([]string{"registration"}, f.TextGraphs...)...)
	if code != 0 {
		t.Fatalf("registration of the text graphs: exit %d: %s", code, errText)
	}
	fromJSON, errJSON, code := runClosureCLI(t, "registration", f.JSONGraph)
	if code != 0 {
		t.Fatalf("registration of the JSON graph: exit %d: %s", code, errJSON)
	}
	if fromText != fromJSON {
		t.Errorf("the text and JSON forms give different registrations:\n%s\n---\n%s", fromText, fromJSON)
	}
	if !strings.HasPrefix(errText, "registration: 5 store paths, 2.87 MiB of NAR; 5 hashed, 0 verified") ||
		!strings.HasPrefix(errJSON, "registration: 5 store paths, 2.87 MiB of NAR; 0 hashed, 5 verified") {
		t.Errorf("summaries: %q, %q", errText, errJSON)
	}
	if err := n.CheckRegistration(t, []byte(fromText), "/", paths); err != nil {
		t.Fatalf("Nix rejects the registration: %v", err)
	}

	// The same closure under --root.
	root := t.TempDir()
	store := filepath.Join(root, "nix", "store")
	if err := os.MkdirAll(store, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if out, err := exec.Command("cp", "-a", p, store+"/").CombinedOutput(); err != nil {
			t.Fatalf("cp: %v\n%s", err, out)
		}
	}
	underRoot, errOut, code := runClosureCLI(t, append([]string{"registration", "--root", root}, f.TextGraphs...)...)
	if code != 0 || underRoot != fromText {
		t.Fatalf("registration --root: exit %d, %s\n%s", code, errOut, underRoot)
	}

	// A damaged file: the JSON graph's hash no longer matches, which is an
	// error naming the path unless --no-verify-hashes.
	lib := f.Paths["lib"]
	deep := filepath.Join(root, lib, "a/b/c/deep")
	if err := os.Chmod(filepath.Dir(deep), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(deep); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(deep, []byte("damaged\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runClosureCLI(t, "registration", "--root", root, f.JSONGraph)
	if code != 1 || out != "" || !strings.HasPrefix(errOut, "mkext4fs: "+lib+": the files at "+filepath.Join(root, lib)+" do not match the graph") {
		t.Errorf("damaged copy: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, errOut, code = runClosureCLI(t, "registration", "--no-verify-hashes", "--root", root, f.JSONGraph)
	if code != 0 || out != fromJSON || !strings.Contains(errOut, "0 hashed, 5 trusted") {
		t.Errorf("--no-verify-hashes: exit %d, stderr %q", code, errOut)
	}
}
