package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/mkext4fs/mkext4fs/internal/testutil"
	"github.com/nix-community/go-nix/pkg/storepath"
)

// generate writes a corpus with the given extra flags into a fresh directory.
func generate(t *testing.T, args ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "corpus")
	var stderr bytes.Buffer
	if err := run(append([]string{"-out", out}, args...), &stderr); err != nil {
		t.Fatalf("corpus %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// listing describes every name under dir: type, mode, size, mtime, link
// count, content digest or link target.
func listing(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		rel, _ := filepath.Rel(dir, path)
		fmt.Fprintf(&b, "%q %v %d %d %d", rel, fi.Mode(), fi.Size(), st.Mtim.Sec, st.Nlink)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " -> %q", target)
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %x", sha256.Sum256(data))
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestSameSeedSameCorpus(t *testing.T) {
	a := generate(t, "-scale", "0.01", "-j", "1")
	b := generate(t, "-scale", "0.01", "-j", "4")
	c := generate(t, "-scale", "0.01", "-seed", "2")
	for _, f := range []string{"closure", ".attrs.json", "registration", "store-paths", "corpus.env"} {
		da, _ := os.ReadFile(filepath.Join(a, f))
		db, _ := os.ReadFile(filepath.Join(b, f))
		dc, _ := os.ReadFile(filepath.Join(c, f))
		if len(da) == 0 || !bytes.Equal(da, db) {
			t.Errorf("%s differs between two runs with the same seed", f)
		}
		if f != "corpus.env" && bytes.Equal(da, dc) {
			t.Errorf("%s is the same for seeds 1 and 2", f)
		}
	}
	if la, lb := listing(t, filepath.Join(a, "root")), listing(t, filepath.Join(b, "root")); la != lb {
		t.Errorf("trees differ between two runs with the same seed")
	}
}

// readEnv parses corpus.env.
func readEnv(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "corpus.env"))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]int64{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			env[k] = n
		}
	}
	return env
}

func TestShape(t *testing.T) {
	out := generate(t, "-scale", "0.02")
	store := filepath.Join(out, "root", "nix", "store")
	env := readEnv(t, out)

	var entries, dirs, symlinks, long, multiLinked, spaces, sparse int64
	inodes := map[uint64]bool{}
	err := filepath.WalkDir(store, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == store {
			return err
		}
		entries++
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		inodes[st.Ino] = true
		if st.Mtim.Sec != 1 {
			t.Errorf("%s: mtime %d, want 1", path, st.Mtim.Sec)
		}
		if strings.ContainsAny(d.Name(), " \"'") {
			spaces++
		}
		perm := fi.Mode().Perm()
		switch {
		case fi.IsDir():
			dirs++
			if perm != 0o555 {
				t.Errorf("%s: directory mode %o", path, perm)
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			symlinks++
			target, _ := os.Readlink(path)
			if len(target) > 60 {
				long++
			}
		case fi.Mode().IsRegular():
			if perm != 0o444 && perm != 0o555 {
				t.Errorf("%s: file mode %o", path, perm)
			}
			if st.Nlink > 1 {
				multiLinked++
			}
			if hasZeroBlock(t, path) {
				sparse++
			}
		default:
			t.Errorf("%s: unexpected type %v", path, fi.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if entries != env["entries"] || int64(len(inodes)) != env["inodes"] || dirs != env["dirs"] || symlinks != env["symlinks"] {
		t.Errorf("tree has %d names, %d inodes, %d dirs, %d symlinks; corpus.env says %v", entries, len(inodes), dirs, symlinks, env)
	}
	for what, n := range map[string]int64{"long symlinks": long, "hardlinked files": multiLinked,
		"names with blanks or quotes": spaces, "files with zero blocks": sparse} {
		if n == 0 {
			t.Errorf("no %s", what)
		}
	}

	// Both graph forms list the same paths with the same references, every
	// name is a valid store path, and apart from self-references the
	// references point backwards in a topological order (no cycles).
	text := parseTextGraph(t, filepath.Join(out, "closure"))
	var attrs struct {
		Closure []attrsEntry `json:"closure"`
	}
	data, err := os.ReadFile(filepath.Join(out, ".attrs.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &attrs); err != nil {
		t.Fatal(err)
	}
	if len(attrs.Closure) != len(text) || int64(len(text)) != env["paths"] {
		t.Fatalf("%d paths in .attrs.json, %d in closure, %d in corpus.env", len(attrs.Closure), len(text), env["paths"])
	}
	for _, e := range attrs.Closure {
		if _, err := storepath.FromAbsolutePath(e.Path); err != nil {
			t.Errorf("invalid store path: %v", err)
		}
		if fmt.Sprint(e.References) != fmt.Sprint(text[e.Path]) {
			t.Errorf("%s: references differ between the two forms", e.Path)
		}
		if _, err := os.Lstat(filepath.Join(out, "root", e.Path)); err != nil {
			t.Errorf("%s is in the graph but not in the tree: %v", e.Path, err)
		}
	}
	if cyclic(text) {
		t.Errorf("the references have a cycle other than self-references")
	}
}

func hasZeroBlock(t *testing.T, path string) bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, blockSize)
	for off := 0; off+blockSize <= len(data); off += blockSize {
		if bytes.Equal(data[off:off+blockSize], zero) {
			return true
		}
	}
	return false
}

func parseTextGraph(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	graph := map[string][]string{}
	for sc.Scan() {
		p := sc.Text()
		if !sc.Scan() || sc.Text() != "" || !sc.Scan() {
			t.Fatalf("%s: malformed record for %s", path, p)
		}
		n, err := strconv.Atoi(sc.Text())
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		refs := []string{}
		for i := 0; i < n && sc.Scan(); i++ {
			refs = append(refs, sc.Text())
		}
		sort.Strings(refs)
		graph[p] = refs
	}
	return graph
}

func cyclic(g map[string][]string) bool {
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(string) bool
	visit = func(p string) bool {
		switch state[p] {
		case 1:
			return true
		case 2:
			return false
		}
		state[p] = 1
		for _, r := range g[p] {
			if r != p && visit(r) {
				return true
			}
		}
		state[p] = 2
		return false
	}
	for p := range g {
		if visit(p) {
			return true
		}
	}
	return false
}

// The NAR hashes and sizes in .attrs.json must be what Nix computes.
func TestNarHashesMatchNix(t *testing.T) {
	nixHash := testutil.RequireTool(t, "nix-hash")
	nixStore := testutil.RequireTool(t, "nix-store")
	out := generate(t, "-scale", "0.01")
	var attrs struct {
		Closure []attrsEntry `json:"closure"`
	}
	data, err := os.ReadFile(filepath.Join(out, ".attrs.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &attrs); err != nil {
		t.Fatal(err)
	}
	for _, e := range attrs.Closure {
		host := filepath.Join(out, "root", e.Path)
		got, err := exec.Command(nixHash, "--type", "sha256", "--base32", host).Output()
		if err != nil {
			t.Fatalf("nix-hash %s: %v", host, err)
		}
		if want := "sha256:" + strings.TrimSpace(string(got)); e.NarHash != want {
			t.Errorf("%s: narHash %s, nix-hash says %s", e.Path, e.NarHash, want)
		}
		cmd := exec.Command(nixStore, "--dump", host)
		pipe, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, pipe)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("nix-store --dump %s: %v", host, err)
		}
		if e.NarSize != n {
			t.Errorf("%s: narSize %d, nix-store --dump gives %d bytes", e.Path, e.NarSize, n)
		}
	}
}

func TestFlat(t *testing.T) {
	out := generate(t, "-flat", "3000")
	dirs, err := filepath.Glob(filepath.Join(out, "root", "nix", "store", "*", "share", "man", "man3"))
	if err != nil || len(dirs) != 1 {
		t.Fatalf("want one man3 directory, got %v (%v)", dirs, err)
	}
	names, err := os.ReadDir(dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 3000 {
		t.Errorf("flat directory has %d entries, want 3000", len(names))
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{}, {"-out", t.TempDir(), "-scale", "9"}, {"-out", t.TempDir(), "extra"}} {
		err := run(args, io.Discard)
		if _, ok := err.(usageError); !ok {
			t.Errorf("run(%q) = %v, want a usage error", args, err)
		}
	}
}
