package nixtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/mkext4fs/mkext4fs/internal/testutil"
)

// NixConf is the configuration the private NIX_CONF_DIR holds.
const NixConf = "build-users-group =\nsandbox = false\nsubstituters =\n"

// Nix runs the Nix tools with a private configuration.
type Nix struct {
	confDir string
	tools   map[string]string
}

// New finds the Nix tools and sets up a private NIX_CONF_DIR. Without them,
// or without root, the test is skipped locally and fails in CI.
func New(t testing.TB) *Nix {
	t.Helper()
	n := &Nix{tools: map[string]string{}}
	for _, tool := range []string{"nix-build", "nix-instantiate", "nix-store", "nix-hash"} {
		n.tools[tool] = testutil.RequireTool(t, tool)
	}
	testutil.RequireRoot(t)
	n.confDir = filepath.Join(t.TempDir(), "conf")
	if err := os.MkdirAll(n.confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.confDir, "nix.conf"), []byte(NixConf), 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

// ConfDir is the private NIX_CONF_DIR.
func (n *Nix) ConfDir() string { return n.confDir }

// Env is the environment the Nix tools run with: the test's, without
// NIX_REMOTE, with the private configuration and no user configuration.
func (n *Nix) Env() []string {
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "NIX_REMOTE", "NIX_CONF_DIR", "NIX_USER_CONF_FILES", "NIX_PATH":
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"NIX_CONF_DIR="+n.confDir,
		"NIX_USER_CONF_FILES="+filepath.Join(n.confDir, "nix.conf"),
	)
}

// Command prepares one of nix-build, nix-instantiate, nix-store, nix-hash.
func (n *Nix) Command(ctx context.Context, tool string, args ...string) *exec.Cmd {
	bin := n.tools[tool]
	if bin == "" {
		bin = tool
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = n.Env()
	return cmd
}

// Output runs a Nix tool with stdin and returns its stdout; a failure
// returns an error carrying the command line and stderr.
func (n *Nix) Output(stdin io.Reader, tool string, args ...string) (string, error) {
	cmd := n.Command(context.Background(), tool, args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s", tool, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// Run runs a Nix tool and returns its stdout; a failure fails the test.
func (n *Nix) Run(t testing.TB, tool string, args ...string) string {
	t.Helper()
	out, err := n.Output(nil, tool, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Build runs nix-build on file for the given attributes (all of them when
// none are given) and returns the output paths, one per attribute, in
// order. The out-links live in a test directory, so the outputs stay
// rooted while the test runs. It retries once when Nix 2.8 kills a builder
// that was just exiting ("signal 9").
func (n *Nix) Build(t testing.TB, file string, attrs ...string) []string {
	t.Helper()
	link := filepath.Join(t.TempDir(), "result")
	args := []string{file, "--out-link", link}
	for _, a := range attrs {
		args = append(args, "-A", a)
	}
	out, err := n.Output(nil, "nix-build", args...)
	if err != nil && strings.Contains(err.Error(), "signal 9") {
		t.Logf("retrying nix-build once after: %v", err)
		out, err = n.Output(nil, "nix-build", args...)
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(out)
}

// BuildExpr writes a Nix expression to a file and builds it like Build.
func (n *Nix) BuildExpr(t testing.TB, expr string, attrs ...string) []string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "default.nix")
	if err := os.WriteFile(file, []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	return n.Build(t, file, attrs...)
}

// Instantiate runs nix-instantiate and returns the derivation paths.
func (n *Nix) Instantiate(t testing.TB, file string, attrs ...string) []string {
	t.Helper()
	args := []string{file}
	for _, a := range attrs {
		args = append(args, "-A", a)
	}
	return strings.Fields(n.Run(t, "nix-instantiate", args...))
}

// Requisites returns the closure of paths as nix-store -qR sees it, sorted.
func (n *Nix) Requisites(t testing.TB, paths ...string) []string {
	t.Helper()
	out := strings.Fields(n.Run(t, "nix-store", append([]string{"-qR"}, paths...)...))
	sort.Strings(out)
	return out
}

// References returns the references nix-store -q --references reports for
// path, sorted.
func (n *Nix) References(t testing.TB, path string) []string {
	t.Helper()
	out := strings.Fields(n.Run(t, "nix-store", "-q", "--references", path))
	sort.Strings(out)
	return out
}

// NarHash returns the NAR hash (as nix-store -q --hash prints it,
// sha256:<nix-base32>) and the NAR size Nix recorded for path.
func (n *Nix) NarHash(t testing.TB, path string) (string, uint64) {
	t.Helper()
	hash := strings.TrimSpace(n.Run(t, "nix-store", "-q", "--hash", path))
	sizeText := strings.TrimSpace(n.Run(t, "nix-store", "-q", "--size", path))
	size, err := strconv.ParseUint(sizeText, 10, 64)
	if err != nil {
		t.Fatalf("nix-store -q --size %s: %q: %v", path, sizeText, err)
	}
	return hash, size
}

// DumpHash returns what Nix computes for the file tree at path, which need
// not be in a store: the NAR hash as sha256:<nix-base32> (nix-hash) and the
// length of the NAR (nix-store --dump).
func (n *Nix) DumpHash(t testing.TB, path string) (string, uint64) {
	t.Helper()
	hash := strings.TrimSpace(n.Run(t, "nix-hash", "--type", "sha256", "--base32", path))
	cmd := n.Command(context.Background(), "nix-store", "--dump", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	size, copyErr := io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil || copyErr != nil {
		t.Fatalf("nix-store --dump %s: %v %v\n%s", path, err, copyErr, stderr.String())
	}
	return "sha256:" + hash, uint64(size)
}

// CheckRegistration copies paths from root (root+path; "/" for the real
// store) into a fresh store under a test directory, loads reg into it with
// nix-store --load-db and runs nix-store --verify --check-contents, which
// re-hashes every path. It returns nil when Nix accepts the registration
// and an error carrying Nix's output when it does not.
func (n *Nix) CheckRegistration(t testing.TB, reg []byte, root string, paths []string) error {
	t.Helper()
	dir := t.TempDir()
	store := filepath.Join(dir, "nix", "store")
	if err := os.MkdirAll(store, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		cmd := exec.Command("cp", "-a", "--", filepath.Join(root, p), store+"/")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("cp -a %s: %v\n%s", p, err, out)
		}
	}
	if _, err := n.Output(bytes.NewReader(reg), "nix-store", "--store", dir, "--load-db"); err != nil {
		return err
	}
	cmd := n.Command(context.Background(), "nix-store", "--store", dir, "--verify", "--check-contents")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("nix-store --verify --check-contents: %w\n%s", err, out)
	}
	// Nix reports some problems without failing; take any as a failure.
	if bytes.Contains(out, []byte("was modified")) || bytes.Contains(out, []byte("error")) {
		return fmt.Errorf("nix-store --verify --check-contents complained:\n%s", out)
	}
	return nil
}
