package closure_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mkext4fs/mkext4fs/internal/nixtest"
	"github.com/mkext4fs/mkext4fs/pkg/closure"
	"golang.org/x/sys/unix"
)

// helperRoot and helperGraph make the test binary run hashAndExit instead
// of the tests, so that a test can hash as another user.
const (
	helperRoot  = "MKEXT4FS_CLOSURE_TEST_ROOT"
	helperGraph = "MKEXT4FS_CLOSURE_TEST_GRAPH"
)

func TestMain(m *testing.M) {
	if graph := os.Getenv(helperGraph); graph != "" {
		hashAndExit(os.Getenv(helperRoot), graph)
	}
	os.Exit(m.Run())
}

// hashAndExit loads graph and hashes it under root; the error goes to
// stderr and the exit status.
func hashAndExit(root, graph string) {
	c, err := closure.Load([]string{graph}, closure.Options{})
	if err == nil {
		err = c.Hash(context.Background(), closure.HashOptions{Root: root})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// storePath makes an absolute store path with a valid hash part.
func storePath(i int, name string) string {
	const alphabet = "0123456789abcdfghijklmnpqrsvwxyz"
	h := []byte(strings.Repeat("0", 32))
	h[31] = alphabet[i%32]
	h[30] = alphabet[i/32%32]
	return "/nix/store/" + string(h) + "-" + name
}

// newStore makes root/nix/store and a text graph listing paths without
// references; the caller fills in the files.
func newStore(t *testing.T, paths ...string) (root, graph string) {
	t.Helper()
	root = t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "nix", "store"), 0o755); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&b, "%s\n\n0\n", p)
	}
	graph = filepath.Join(t.TempDir(), "graph")
	if err := os.WriteFile(graph, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, graph
}

// Names whose bytewise order differs from other orders, a space, a
// newline, non-ASCII, names starting with "..".
var trickyNames = []string{"a", "A", "a b", "..data", "...", "a-", "a.b", "a0", "ab", "b", "grüße", "new\nline", "x y z", "_", "~", ".hidden", "-dash"}

// randomTree writes a random file tree at dir: directories (some empty),
// files of sizes around the NAR padding and the read buffer, executables,
// and symlinks (relative, absolute, dangling, long).
func randomTree(t *testing.T, rng *rand.Rand, dir string, depth int) {
	t.Helper()
	randomTreeOf(t, rng, dir, depth, trickyNames)
}

// randomTreeOf is randomTree with its names taken from names.
func randomTreeOf(t *testing.T, rng *rand.Rand, dir string, depth int, names []string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sizes := []int{0, 1, 7, 8, 9, 63, 4096, 65537, 1<<20 + 3}
	n := rng.Intn(len(names))
	for _, i := range rng.Perm(len(names))[:n] {
		p := filepath.Join(dir, names[i])
		switch k := rng.Intn(10); {
		case k < 2 && depth < 3:
			randomTreeOf(t, rng, p, depth+1, names)
		case k < 4:
			targets := []string{"a", "../x", "/nix/store/" + strings.Repeat("z", 32) + "-target", strings.Repeat("long/", 30), "dangling target"}
			if err := os.Symlink(targets[rng.Intn(len(targets))], p); err != nil {
				t.Fatal(err)
			}
		default:
			data := make([]byte, sizes[rng.Intn(len(sizes))])
			rng.Read(data)
			mode := os.FileMode(0o444)
			if rng.Intn(3) == 0 {
				mode = 0o555
			}
			if err := os.WriteFile(p, data, mode); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Random trees hash as nix-hash and nix-store --dump see them, including
// store paths that are a single file or a symlink.
func TestHashMatchesNixHash(t *testing.T) {
	n := nixtest.New(t)
	rng := rand.New(rand.NewSource(1))
	var paths []string
	for i := 0; i < 12; i++ {
		paths = append(paths, storePath(i, fmt.Sprintf("tree-%d", i)))
	}
	filePath, linkPath := storePath(100, "file"), storePath(101, "link")
	root, graph := newStore(t, append(paths, filePath, linkPath)...)
	for _, p := range paths {
		randomTree(t, rng, filepath.Join(root, p), 0)
	}
	if err := os.WriteFile(filepath.Join(root, filePath), []byte("single file"), 0o555); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("somewhere", filepath.Join(root, linkPath)); err != nil {
		t.Fatal(err)
	}
	c := load(t, []string{graph}, closure.Options{})
	if err := c.Hash(context.Background(), closure.HashOptions{Root: root}); err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Paths {
		hash, size := n.DumpHash(t, filepath.Join(root, p.Path))
		if p.NarHash != hash || p.NarSize != size {
			t.Errorf("%s: computed %s %d, Nix: %s %d", p.Path, p.NarHash, p.NarSize, hash, size)
		}
	}
}

func TestHashErrors(t *testing.T) {
	good, missing := storePath(1, "good"), storePath(2, "missing")
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		paths []string
		want  string
	}{
		{"store path missing on disk", func(t *testing.T, dir string) {}, []string{missing},
			missing + ": lstat ROOT" + missing + ": no such file or directory"},
		{"empty directory as a store path", func(t *testing.T, dir string) {
			mkdirs(t, filepath.Join(dir, good))
		}, []string{good}, ""},
		{"named pipe", func(t *testing.T, dir string) {
			mkdirs(t, filepath.Join(dir, good))
			if err := syscall.Mkfifo(filepath.Join(dir, good, "fifo"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{good}, good + ": ROOT" + good + "/fifo: cannot be put in a NAR: it is a named pipe, not a file, directory or symlink"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, graph := newStore(t, tt.paths...)
			tt.setup(t, root)
			c := load(t, []string{graph}, closure.Options{})
			err := c.Hash(context.Background(), closure.HashOptions{Root: root})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("an empty directory is a valid store path: %v", err)
				}
				return
			}
			want := strings.ReplaceAll(tt.want, "ROOT", root)
			if err == nil || err.Error() != want {
				t.Errorf("error %v\nwant     %s", err, want)
			}
		})
	}
}

func mkdirs(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A file that cannot be read fails the hash and names the store path. As
// root every file is readable, so the test binary hashes as nobody then.
func TestHashUnreadableFile(t *testing.T) {
	p := storePath(3, "secret")
	root, graph := newStore(t, p)
	mkdirs(t, filepath.Join(root, p))
	secret := filepath.Join(root, p, "key")
	writeFile(t, secret, "x")
	if err := os.Chmod(secret, 0); err != nil {
		t.Fatal(err)
	}
	want := p + ": open " + secret + ": permission denied"

	if os.Geteuid() != 0 {
		c := load(t, []string{graph}, closure.Options{})
		err := c.Hash(context.Background(), closure.HashOptions{Root: root})
		if err == nil || err.Error() != want {
			t.Fatalf("error %v\nwant     %s", err, want)
		}
		return
	}
	out, err := runAsNobody(t, root, graph)
	if err == nil || strings.TrimSpace(out) != want {
		t.Fatalf("hashing as nobody: %v\n%s\nwant %s", err, out, want)
	}
}

// A graph file that cannot be read is an error naming it.
func TestLoadUnreadableGraph(t *testing.T) {
	p := storePath(5, "p")
	root, graph := newStore(t, p)
	if err := os.Chmod(graph, 0); err != nil {
		t.Fatal(err)
	}
	want := "reading graph: open " + graph + ": permission denied"
	if os.Geteuid() != 0 {
		if _, err := closure.Load([]string{graph}, closure.Options{}); err == nil || err.Error() != want {
			t.Fatalf("error %v\nwant     %s", err, want)
		}
		return
	}
	out, err := runAsNobody(t, root, graph)
	if err == nil || strings.TrimSpace(out) != want {
		t.Fatalf("loading as nobody: %v\n%s\nwant %s", err, out, want)
	}
}

// runAsNobody runs hashAndExit in a copy of the test binary as user
// nobody, making the directories on the way to root and graph traversable.
func runAsNobody(t *testing.T, root, graph string) (string, error) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "closure.test")
	copyFile(t, self, bin, 0o755)
	for _, p := range []string{root, graph, bin} {
		for d := filepath.Dir(p); d != "/" && d != "."; d = filepath.Dir(d) {
			st, err := os.Stat(d)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm()&0o005 != 0o005 {
				if err := os.Chmod(d, st.Mode().Perm()|0o005); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), helperRoot+"="+root, helperGraph+"="+graph)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// Hashing streams: a large file costs no more memory than a small one.
func TestHashMemoryFlat(t *testing.T) {
	p := storePath(4, "big")
	root, graph := newStore(t, p)
	mkdirs(t, filepath.Join(root, p))
	const size = 256 << 20
	f, err := os.Create(filepath.Join(root, p, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	c := load(t, []string{graph}, closure.Options{})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if err := c.Hash(context.Background(), closure.HashOptions{Root: root}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("hashing a %d MiB file allocated %d MiB", size>>20, alloc>>20)
	}
	if c.Paths[0].NarSize < size {
		t.Errorf("NAR size %d is smaller than the file", c.Paths[0].NarSize)
	}
}

// A cancelled context stops the hashing with an error saying so.
func TestHashCancelled(t *testing.T) {
	var paths []string
	for i := 0; i < 8; i++ {
		paths = append(paths, storePath(10+i, "p"))
	}
	root, graph := newStore(t, paths...)
	for _, p := range paths {
		writeFile(t, filepath.Join(root, p), "x")
	}
	c := load(t, []string{graph}, closure.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := c.Hash(ctx, closure.HashOptions{Root: root})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	for _, p := range c.Paths {
		if p.HasNar() {
			t.Errorf("%s was hashed after the cancellation", p.Path)
		}
	}
}

// Workers bound the parallelism but do not change the result.
func TestHashWorkers(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	var paths []string
	for i := 0; i < 10; i++ {
		paths = append(paths, storePath(40+i, "w"))
	}
	root, graph := newStore(t, paths...)
	for _, p := range paths {
		randomTree(t, rng, filepath.Join(root, p), 0)
	}
	one := load(t, []string{graph}, closure.Options{})
	many := load(t, []string{graph}, closure.Options{})
	if err := one.Hash(context.Background(), closure.HashOptions{Root: root, Workers: 1}); err != nil {
		t.Fatal(err)
	}
	if err := many.Hash(context.Background(), closure.HashOptions{Root: root, Workers: 7}); err != nil {
		t.Fatal(err)
	}
	for i := range one.Paths {
		if one.Paths[i].NarHash != many.Paths[i].NarHash || !one.Paths[i].HasNar() {
			t.Errorf("%s: %s with one worker, %s with seven", one.Paths[i].Path, one.Paths[i].NarHash, many.Paths[i].NarHash)
		}
	}
}

// Small sees every file of at most SmallSize bytes once for each of its
// names, with its lstat and its whole content, and nothing else; the
// hashes are those of a hashing without it.
func TestHashSmall(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	paths := []string{storePath(60, "small-file"), storePath(61, "s1"), storePath(62, "s2")}
	root, graph := newStore(t, paths...)
	writeFile(t, filepath.Join(root, paths[0]), "a store path that is one file")
	for _, p := range paths[1:] {
		randomTree(t, rng, filepath.Join(root, p), 0)
	}
	// A hard link, seen once for each name.
	writeFile(t, filepath.Join(root, paths[1], "linked"), strings.Repeat("l", 4096))
	if err := os.Link(filepath.Join(root, paths[1], "linked"), filepath.Join(root, paths[2], "link")); err != nil {
		t.Fatal(err)
	}
	const smallSize = 4096
	want := map[string]bool{}
	for _, p := range paths {
		err := filepath.Walk(filepath.Join(root, p), func(path string, info os.FileInfo, err error) error {
			if err == nil && info.Mode().IsRegular() && info.Size() <= smallSize {
				want[path] = true
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	seen := map[string]int{} // content and inode, as seen
	c := load(t, []string{graph}, closure.Options{})
	err := c.Hash(context.Background(), closure.HashOptions{Root: root, SmallSize: smallSize, Small: func(st *unix.Stat_t, content []byte) {
		mu.Lock()
		defer mu.Unlock()
		seen[fmt.Sprintf("%d:%x", st.Ino, content)]++
	}})
	if err != nil {
		t.Fatal(err)
	}
	expected := map[string]int{}
	for path := range want {
		var st syscall.Stat_t
		if err := syscall.Lstat(path, &st); err != nil {
			t.Fatal(err)
		}
		content, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		expected[fmt.Sprintf("%d:%x", st.Ino, content)]++
	}
	if len(want) < 5 || fmt.Sprint(seen) != fmt.Sprint(expected) {
		t.Errorf("Small saw %d files:\n%v\nwant the %d of at most %d bytes:\n%v", len(seen), seen, len(want), smallSize, expected)
	}
	plain := load(t, []string{graph}, closure.Options{})
	huge := closure.HashOptions{Root: root, SmallSize: 1 << 20, Small: func(*unix.Stat_t, []byte) {}}
	if err := plain.Hash(context.Background(), huge); err == nil || !strings.Contains(err.Error(), "do not fit the read buffer") {
		t.Errorf("SmallSize of 1 MiB: %v", err)
	}
	if err := plain.Hash(context.Background(), closure.HashOptions{Root: root}); err != nil {
		t.Fatal(err)
	}
	for i := range c.Paths {
		if c.Paths[i].NarHash != plain.Paths[i].NarHash || c.Paths[i].NarSize != plain.Paths[i].NarSize {
			t.Errorf("%s: %s with Small, %s without", c.Paths[i].Path, c.Paths[i].NarHash, plain.Paths[i].NarHash)
		}
	}
}

// TestHashHeld: held workers wait for Release. With one of two workers
// held, no second store path is read while the first is; once Release is
// closed, two are read at once.
func TestHashHeld(t *testing.T) {
	paths := []string{storePath(70, "h0"), storePath(71, "h1"), storePath(72, "h2"), storePath(73, "h3")}
	root, graph := newStore(t, paths...)
	for _, p := range paths {
		writeFile(t, filepath.Join(root, p), "one file")
	}
	release := make(chan struct{})
	var (
		mu            sync.Mutex
		active, calls int
		most          [2]int // most paths read at once, before and after Release
	)
	small := func(*unix.Stat_t, []byte) {
		mu.Lock()
		active++
		calls++
		first := calls == 1
		after := 0
		select {
		case <-release:
			after = 1
		default:
		}
		most[after] = max(most[after], active)
		mu.Unlock()
		// The first read lasts long enough for a second worker to start
		// one; then the held worker is let go, and the others wait for
		// it.
		if first {
			time.Sleep(50 * time.Millisecond)
			close(release)
		}
		if after == 1 {
			time.Sleep(50 * time.Millisecond)
		}
		mu.Lock()
		active--
		mu.Unlock()
	}
	c := load(t, []string{graph}, closure.Options{})
	err := c.Hash(context.Background(), closure.HashOptions{Root: root, Workers: 2, Held: 1, Release: release, SmallSize: 4096, Small: small})
	if err != nil {
		t.Fatal(err)
	}
	if most != [2]int{1, 2} {
		t.Errorf("paths read at once before and after Release: %v, want [1 2]", most)
	}
	// Held workers end with the context when Release never comes.
	ctx, cancel := context.WithCancel(context.Background())
	never := make(chan struct{})
	c = load(t, []string{graph}, closure.Options{})
	err = c.Hash(ctx, closure.HashOptions{Root: root, Workers: 2, Held: 5, Release: never, SmallSize: 4096, Small: func(*unix.Stat_t, []byte) { cancel() }})
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Errorf("Hash cancelled with a worker held: %v", err)
	}
}
