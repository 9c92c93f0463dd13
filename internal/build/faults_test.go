package build

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mkext4fs/mkext4fs/internal/e2fs"
	"github.com/mkext4fs/mkext4fs/internal/imagetest"
	"github.com/mkext4fs/mkext4fs/internal/testutil"
	"github.com/mkext4fs/mkext4fs/pkg/plan"
	"golang.org/x/sys/unix"
)

// This file tests the faults a build must survive: each ends in one line
// that names the path or tool and the cause, and leaves nothing at
// --output (TestNothingAtOutputOnFailure in build_test.go has the first
// few); and the edges that must work.

// faultCase is a build that must fail with an error holding every string
// of want.
type faultCase struct {
	name   string
	store  func(t *testing.T) *imagetest.Store // nil: smallStore
	change func(t *testing.T, o *Options)
	want   []string
}

// smallStore is a store of a few paths that builds in about a second.
func smallStore(t *testing.T) *imagetest.Store {
	s := imagetest.NewStore(t)
	s.Add(t, "base", func(p string) error {
		return writeFiles(p, map[string]string{"bin/tool": "#!/bin/sh\n", "lib/lib.so": strings.Repeat("lib", 10000), "share/doc": "doc\n"})
	})
	s.Add(t, "file", func(p string) error { return os.WriteFile(p, []byte("file\n"), 0o444) })
	s.Finish(t)
	return s
}

// realTool is the path of an installed e2fsprogs tool or of faketime.
func realTool(t *testing.T, name string) string {
	t.Helper()
	return testutil.RequireTool(t, name)
}

// runFault builds with the case's change and checks the error.
func runFault(t *testing.T, tc faultCase) error {
	t.Helper()
	var s *imagetest.Store
	if tc.store != nil {
		s = tc.store(t)
	} else {
		s = smallStore(t)
	}
	out := filepath.Join(t.TempDir(), "img")
	o := defaults(s, out)
	var log bytes.Buffer
	o.Log = &log
	if tc.change != nil {
		tc.change(t, &o)
	}
	_, err := Build(context.Background(), o)
	if err == nil {
		t.Fatalf("build succeeded\nlog:\n%s", log.String())
	}
	t.Logf("error: %v", err)
	if strings.ContainsAny(err.Error(), "\n\r") {
		t.Errorf("error spans several lines: %q", err)
	}
	for _, w := range tc.want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not say %q", w)
		}
	}
	assertNothingLeft(t, out)
	return err
}

// fakeTool writes an executable shell script called name.
func fakeTool(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// versionOr writes a stand-in for mke2fs that answers -V with version and
// runs body for anything else.
func versionOr(t *testing.T, version, body string) string {
	return fakeTool(t, "mke2fs", "if [ \"$1\" = -V ]; then echo 'mke2fs "+version+" (8-Jul-2025)' >&2; echo '\tUsing EXT2FS Library version "+version+"' >&2; exit 0; fi\n"+body)
}

// TestToolFaults: the tools missing, failing or killed at every step of a
// build.
func TestToolFaults(t *testing.T) {
	requireTools(t)
	missing := func(t *testing.T) string { return filepath.Join(t.TempDir(), "missing") }
	cases := []faultCase{
		{name: "libfaketime missing", change: func(t *testing.T, o *Options) { o.Tools.Libfaketime = missing(t) },
			want: []string{"libfaketime", "missing: not a file"}},
		{name: "libfaketime not a library", change: func(t *testing.T, o *Options) {
			o.Tools.Libfaketime = fakeTool(t, "libfaketime.so.1", "not a library\n")
		}, want: []string{"with libfaketime", "libfaketime.so.1 preloaded", "cannot be preloaded"}},
		{name: "mke2fs missing", change: func(t *testing.T, o *Options) { o.Tools.Mke2fs = missing(t) },
			want: []string{"missing", "no such file or directory"}},
		{name: "resize2fs missing", change: func(t *testing.T, o *Options) { o.Tools.Resize2fs = missing(t) },
			want: []string{"missing", "no such file or directory"}},
		{name: "tune2fs missing", change: func(t *testing.T, o *Options) { o.Tools.Tune2fs = missing(t) },
			want: []string{"missing", "no such file or directory"}},
		{name: "mke2fs killed", change: func(t *testing.T, o *Options) {
			o.Tools.Mke2fs = versionOr(t, "1.47.0", "kill -9 $$\n")
		}, want: []string{"mke2fs -q", `ended by a signal (killed)`}},
		{name: "mke2fs killed after the trials", change: func(t *testing.T, o *Options) {
			// The trials pass lazy_itable_init=1; the real mkfs 0.
			real := realTool(t, "mke2fs")
			o.Tools.Mke2fs = versionOr(t, "1.47.0", "case \"$*\" in *lazy_itable_init=0*) kill -9 $$;; esac\nexec "+real+" \"$@\"\n")
		}, want: []string{"mke2fs -q", "lazy_itable_init=0", "ended by a signal"}},
		{name: "debugfs killed mid-run", change: func(t *testing.T, o *Options) {
			// debugfs gets ten commands, waits for more and is killed.
			o.Tools.Debugfs = fakeTool(t, "debugfs", "exec 3<&0\n{ head -n 10 <&3; exec sleep 1 3<&-; } 2>/dev/null | "+realTool(t, "debugfs")+
				" \"$@\" & pid=$!\nsleep 0.3; kill -9 $pid; exec 2>/dev/null; wait $pid\n")
		}, want: []string{"debugfs -w -f - ", "exit status 137 after 10 of "}},
		{name: "e2fsck killed", change: func(t *testing.T, o *Options) { o.Tools.E2fsck = fakeTool(t, "e2fsck", "kill -9 $$\n") },
			want: []string{"e2fsck -f -y -D", `ended by a signal (killed)`}},
		{name: "e2fsck -fn finds a problem", change: func(t *testing.T, o *Options) {
			o.Tools.E2fsck = fakeTool(t, "e2fsck", "case \"$*\" in *-n*) echo 'Inode 12 has illegal block(s).'; exit 4;; esac\nexec "+realTool(t, "e2fsck")+" \"$@\"\n")
		}, want: []string{"e2fsck -f -n", "exit status 4", "Inode 12 has illegal block(s)."}},
		{name: "tune2fs fails", change: func(t *testing.T, o *Options) {
			o.Tools.Tune2fs = fakeTool(t, "tune2fs", "echo 'tune2fs: Invalid filesystem option set: metadata_csum' >&2\nexit 1\n")
		}, want: []string{"tune2fs -O metadata_csum", "exit status 1", "Invalid filesystem option set"}},
		{name: "tune2fs killed", change: func(t *testing.T, o *Options) { o.Tools.Tune2fs = fakeTool(t, "tune2fs", "kill -9 $$\n") },
			want: []string{"tune2fs -O metadata_csum", "ended by a signal"}},
		{name: "e2fsprogs version unreadable", change: func(t *testing.T, o *Options) {
			o.Tools.Mke2fs = fakeTool(t, "mke2fs", "echo 'mkfs: unknown option' >&2\nexit 1\n")
		}, want: []string{"/mke2fs -V: exit status 1: mkfs: unknown option"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runFault(t, tc) })
	}
}

// TestInputFaults: inputs that cannot make an image.
func TestInputFaults(t *testing.T) {
	requireTools(t)
	cases := []faultCase{
		{name: "graph without records", change: func(t *testing.T, o *Options) {
			empty := filepath.Join(t.TempDir(), "graph")
			if err := os.WriteFile(empty, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			o.Graphs = []string{empty}
		}, want: []string{"graph: no store paths: is this an exportReferencesGraph file?"}},
		{name: "graph missing", change: func(t *testing.T, o *Options) { o.Graphs = []string{"/nonexistent/graph"} },
			want: []string{"/nonexistent/graph", "no such file or directory"}},
		{name: "one store path missing", change: func(t *testing.T, o *Options) {
			if err := os.RemoveAll(filepath.Join(o.Root, "nix", "store", filepath.Base(graphPaths(t, o)[1]))); err != nil {
				t.Fatal(err)
			}
		}, want: []string{"lstat", "no such file or directory"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runFault(t, tc) })
	}
}

// graphPaths reads the store paths of the build's first graph (text form).
func graphPaths(t *testing.T, o *Options) []string {
	t.Helper()
	b, err := os.ReadFile(o.Graphs[0])
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "/nix/store/") && !contains(paths, l) {
			paths = append(paths, l)
		}
	}
	return paths
}

// TestHostDiskFull: when the filesystem --output is on fills up, wherever
// in the build that happens, the error says it is the build host's disk,
// names the directory, and tells it apart from a full image.
func TestHostDiskFull(t *testing.T) {
	requireTools(t)
	testutil.RequireRoot(t)
	s := imagetest.NewStore(t)
	s.Add(t, "data", func(p string) error {
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		rng := rand.New(rand.NewSource(1))
		for i := 0; i < 6; i++ {
			data := make([]byte, 4<<20)
			rng.Read(data)
			if err := os.WriteFile(filepath.Join(p, fmt.Sprintf("blob%d", i)), data, 0o444); err != nil {
				return err
			}
		}
		return writeFiles(p, map[string]string{"small": "small\n"})
	})
	s.Finish(t)
	// The image holds 24 MiB: sizes at which the disk fills during the
	// trials, debugfs, the steps after it, and the compression.
	for _, tc := range []struct {
		size     string
		compress string
	}{{"64k", ""}, {"1m", ""}, {"12m", ""}, {"24m", ""}, {"40m", "zstd"}} {
		t.Run(tc.size+tc.compress, func(t *testing.T) {
			dir := t.TempDir()
			if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+tc.size, "tmpfs", dir).CombinedOutput(); err != nil {
				testutil.Unavailable(t, "mount tmpfs: %v: %s", err, out)
			}
			t.Cleanup(func() {
				if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
					t.Errorf("umount %s: %v: %s", dir, err, out)
				}
			})
			out := filepath.Join(dir, "img")
			o := defaults(s, out)
			o.Compress = tc.compress
			var log bytes.Buffer
			o.Log = &log
			_, err := Build(context.Background(), o)
			if err == nil {
				t.Fatalf("built in %s of tmpfs\n%s", tc.size, log.String())
			}
			t.Logf("error: %v", err)
			msg := err.Error()
			if !strings.HasPrefix(msg, "the build host's disk is full: no space left in "+dir+" ") {
				t.Errorf("error does not say the build host's disk is full in %s", dir)
			}
			if strings.Contains(msg, "the image ran out") || strings.Contains(log.String(), "building again") {
				t.Errorf("a full host disk taken for a full image:\n%s", log.String())
			}
			if strings.ContainsAny(msg, "\n\r") {
				t.Errorf("error spans several lines")
			}
			assertNothingLeft(t, out)
		})
	}
}

// TestE2fsprogs1473BigFile: e2fsprogs 1.47.3 cannot copy files over 2 GiB;
// with it, such a file fails the build before anything is made, with the
// file and the fix named. The same closure builds with other versions
// (TestSparse5GiB).
func TestE2fsprogs1473BigFile(t *testing.T) {
	requireTools(t)
	s := imagetest.NewStore(t)
	sp := s.Add(t, "big", func(p string) error {
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		f, err := os.Create(filepath.Join(p, "disk.img"))
		if err != nil {
			return err
		}
		defer f.Close()
		// More runs of data between holes than a bulk copy takes:
		// debugfs' write copies it.
		for i := int64(0); i <= plan.MaxBulkRuns; i++ {
			if _, err := f.WriteAt([]byte("data"), i<<28); err != nil {
				return err
			}
		}
		if _, err := f.WriteAt([]byte("end"), 3<<30); err != nil {
			return err
		}
		return nil
	})
	s.Finish(t)
	ran := filepath.Join(t.TempDir(), "ran")
	marker := "echo \"$0 $*\" >> " + ran + "\nexit 1\n"
	runFault(t, faultCase{name: "1.47.3", store: func(*testing.T) *imagetest.Store { return s }, change: func(t *testing.T, o *Options) {
		o.Tools.Mke2fs = versionOr(t, "1.47.3", marker)
		o.Tools.Debugfs = fakeTool(t, "debugfs", marker)
	}, want: []string{sp + "/disk.img: 3.00 GiB is larger than 2 GiB, which e2fsprogs 1.47.3 cannot copy", "use e2fsprogs 1.47.4 or newer"}})
	if b, err := os.ReadFile(ran); err == nil {
		t.Errorf("tools ran before the error: %s", b)
	}
}

// appendForever appends to file until stop is closed.
func appendForever(t *testing.T, file string, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte("more"), 1024)
	for {
		select {
		case <-stop:
			return
		default:
		}
		if _, err := f.Write(chunk); err != nil {
			t.Error(err)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// TestStoreChangesDuringBuild: a store file that grows, shrinks or
// vanishes while the image is built fails the build, naming the file,
// instead of giving an image with a short or stale file.
func TestStoreChangesDuringBuild(t *testing.T) {
	requireTools(t)
	changingStore := func(t *testing.T) (*imagetest.Store, string) {
		s := imagetest.NewStore(t)
		sp := s.Add(t, "changing", func(p string) error {
			return writeFiles(p, map[string]string{"data/big": strings.Repeat("0123456789abcdef", 1<<16), "data/other": "other\n"})
		})
		s.Finish(t)
		dir := filepath.Join(s.Host(sp), "data")
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		big := filepath.Join(dir, "big")
		if err := os.Chmod(big, 0o644); err != nil {
			t.Fatal(err)
		}
		return s, big
	}
	for _, tc := range []struct {
		name   string
		change func(big string) error // run once the plan is made
	}{
		{"truncated after the plan", func(big string) error { return os.Truncate(big, 1000) }},
		{"grown after the plan", func(big string) error {
			f, err := os.OpenFile(big, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write([]byte("grown"))
			return err
		}},
		{"vanished after the plan", os.Remove},
		{"rewritten after the plan, same size", func(big string) error {
			return os.WriteFile(big, bytes.Repeat([]byte("x"), 16<<16), 0o644)
		}},
		{"appended to all along", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, big := changingStore(t)
			out := filepath.Join(t.TempDir(), "img")
			o := defaults(s, out)
			var changeErr error
			o.Log = &lineWatcher{on: func(line string) {
				// The log is written by the build itself: the change
				// happens before the image is made.
				if tc.change != nil && strings.HasPrefix(line, "plan:") {
					changeErr = tc.change(big)
				}
			}}
			stop, done := make(chan struct{}), make(chan struct{})
			if tc.change == nil {
				go appendForever(t, big, stop, done)
			} else {
				close(done)
			}
			_, err := Build(context.Background(), o)
			close(stop)
			<-done
			if changeErr != nil {
				t.Fatal(changeErr)
			}
			if err == nil {
				t.Fatal("build succeeded")
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), "big") || strings.ContainsAny(err.Error(), "\n\r") {
				t.Errorf("error is not one line naming the file")
			}
			assertNothingLeft(t, out)
		})
	}
}

// buildBinary compiles the command into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		testutil.Unavailable(t, "go not available: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "mkext4fs")
	if out, err := exec.Command(goTool, "build", "-o", bin, "github.com/mkext4fs/mkext4fs/cmd/mkext4fs").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	return bin
}

// openUp makes every directory from p up to the temporary directory
// searchable by others: t.TempDir makes them 0700.
func openUp(t *testing.T, p string) {
	t.Helper()
	tmp := filepath.Clean(os.TempDir())
	for d := filepath.Clean(p); strings.HasPrefix(d, tmp+"/"); d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, st.Mode().Perm()|0o055); err != nil {
			t.Fatal(err)
		}
	}
}

// failureLine checks that a run of the command failed with exit status 1
// and printed exactly one line of its own, the last, and returns it.
func failureLine(t *testing.T, err error, stderr string) string {
	t.Helper()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("exit: %v, want status 1", err)
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	var own []string
	for _, l := range lines {
		if strings.HasPrefix(l, "mkext4fs: ") {
			own = append(own, l)
		}
	}
	last := lines[len(lines)-1]
	if len(own) != 1 || own[0] != last {
		t.Errorf("want one line of the command's own, the last; got %q", own)
	}
	return last
}

// TestUnreadableStore runs the command as nobody on a store with a file
// and a directory it may not read: the build fails on the first with the
// path and "permission denied".
func TestUnreadableStore(t *testing.T) {
	requireTools(t)
	testutil.RequireRoot(t)
	setpriv := testutil.RequireTool(t, "setpriv")
	bin := buildBinary(t)
	openUp(t, filepath.Dir(bin))
	for _, tc := range []struct {
		name   string
		locked string // made mode 000, relative to the store path
	}{
		{"file", "lib/secret"},
		{"directory", "lib"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := imagetest.NewStore(t)
			sp := s.Add(t, "locked", func(p string) error {
				return writeFiles(p, map[string]string{"lib/secret": "secret\n", "lib/other": "other\n", "bin/x": "#!/bin/sh\n"})
			})
			s.Finish(t)
			openUp(t, s.Root)
			locked := filepath.Join(s.Host(sp), tc.locked)
			if err := os.Chmod(locked, 0); err != nil {
				t.Fatal(err)
			}
			outDir := t.TempDir()
			openUp(t, outDir)
			if err := os.Chown(outDir, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(outDir, "img")
			cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
				bin, "build", "--root", s.Root, "--output", out, s.Graph)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH") + ":/usr/sbin:/sbin"}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			line := failureLine(t, err, stderr.String())
			t.Logf("stderr: %s", line)
			want := "mkext4fs: store path " + sp + ": open " + locked + ": permission denied"
			if line != want {
				t.Errorf("got  %q\nwant %q", line, want)
			}
			assertNothingLeft(t, out)
		})
	}
}

// signalStore is a store that takes the command a few seconds: many
// small files, a directory large enough to be staged (so that e2fsck runs
// between two debugfs), and data to hash.
func signalStore(t *testing.T) *imagetest.Store {
	s := imagetest.NewStore(t)
	s.Add(t, "many", manyFiles(20000, 10, 1000))
	s.Add(t, "bigdir", manyFiles(20000, 0, 0))
	s.Add(t, "data", func(p string) error {
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		rng := rand.New(rand.NewSource(2))
		for i := 0; i < 8; i++ {
			data := make([]byte, 16<<20)
			rng.Read(data)
			if err := os.WriteFile(filepath.Join(p, fmt.Sprintf("blob%d", i)), data, 0o444); err != nil {
				return err
			}
		}
		return nil
	})
	s.Finish(t)
	return s
}

// leftovers lists the live processes that work in or on dir: a working
// directory below it, or an argument or open file naming it.
func leftovers(dir string) []string {
	var found []string
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil || p.Name() == strconv.Itoa(os.Getpid()) {
			continue
		}
		base := filepath.Join("/proc", p.Name())
		stat, _ := os.ReadFile(filepath.Join(base, "stat"))
		if i := bytes.LastIndexByte(stat, ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X' {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(base, "cmdline"))
		refs := []string{string(cmdline)}
		if cwd, err := os.Readlink(filepath.Join(base, "cwd")); err == nil {
			refs = append(refs, cwd)
		}
		fds, _ := os.ReadDir(filepath.Join(base, "fd"))
		for _, fd := range fds {
			if target, err := os.Readlink(filepath.Join(base, "fd", fd.Name())); err == nil {
				refs = append(refs, target)
			}
		}
		for _, r := range refs {
			if strings.Contains(r, dir) {
				found = append(found, p.Name()+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
				break
			}
		}
	}
	return found
}

// TestSignals interrupts the compiled command with SIGINT or SIGTERM at
// points all through a build: it exits 1 with one line of its own,
// leaves nothing beside --output, and no process of the build runs on.
func TestSignals(t *testing.T) {
	requireTools(t)
	if testing.Short() {
		t.Skip("builds a large store several times")
	}
	bin := buildBinary(t)
	s := signalStore(t)
	// A tool that hangs, deaf to SIGINT and SIGTERM, with a child: only
	// ending its whole process group ends it.
	stuck := func(tool string) string {
		return fakeTool(t, tool, "case \"$1\" in -V) exec "+realTool(t, tool)+" \"$@\";; esac\ntrap '' INT TERM\nsleep 60 &\nwait\n")
	}
	for _, tc := range []struct {
		name  string
		sig   syscall.Signal
		after string // the stderr line (prefix) to send the signal at; "" after delay
		nth   int
		delay time.Duration
		flags []string
	}{
		{"walking", syscall.SIGTERM, "", 0, 30 * time.Millisecond, nil},
		{"hashing and sizing", syscall.SIGINT, "closure:", 1, 0, nil},
		{"in a trial mkfs", syscall.SIGTERM, "+ mke2fs", 2, 0, nil},
		{"before mkfs", syscall.SIGINT, "plan:", 1, 0, nil},
		{"populating", syscall.SIGTERM, "+ debugfs", 1, 100 * time.Millisecond, nil},
		{"indexing between the phases", syscall.SIGINT, "+ e2fsck", 1, 0, nil},
		{"populating staged directories", syscall.SIGTERM, "+ debugfs", 2, 50 * time.Millisecond, nil},
		{"adding checksums", syscall.SIGINT, "+ tune2fs", 1, 0, nil},
		{"mke2fs stuck", syscall.SIGTERM, "+ mke2fs", 1, 100 * time.Millisecond, []string{"--mke2fs", stuck("mke2fs")}},
		{"e2fsck stuck", syscall.SIGINT, "+ e2fsck", 1, 100 * time.Millisecond, []string{"--e2fsck", stuck("e2fsck")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outDir := t.TempDir()
			out := filepath.Join(outDir, "img")
			args := append([]string{"build", "-v", "--root", s.Root, "--output", out}, tc.flags...)
			cmd := exec.Command(bin, append(args, s.Graph)...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH") + ":/usr/sbin:/sbin"}
			stderrPipe, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			signal := func() {
				time.Sleep(tc.delay)
				if err := cmd.Process.Signal(tc.sig); err != nil {
					t.Errorf("signal: %v", err)
				}
			}
			if tc.after == "" {
				go signal()
			}
			// Keep the last lines; the command's own line is the last.
			var tail []string
			seen, sent := 0, false
			sc := bufio.NewScanner(stderrPipe)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				l := sc.Text()
				if tc.after != "" && !sent && strings.HasPrefix(l, tc.after) {
					if seen++; seen == tc.nth {
						sent = true
						go signal()
					}
				}
				if tail = append(tail, l); len(tail) > 20 {
					tail = tail[1:]
				}
			}
			err = cmd.Wait()
			if tc.after != "" && !sent {
				t.Fatalf("no %q line %d in the log; it ends:\n%s", tc.after, tc.nth, strings.Join(tail, "\n"))
			}
			t.Logf("ended %.2f s after the start", time.Since(start).Seconds())
			line := failureLine(t, err, strings.Join(tail, "\n"))
			if want := "mkext4fs: interrupted: nothing written to " + out; line != want {
				t.Errorf("last line %q, want %q", line, want)
			}
			assertNothingLeft(t, out)
			left := leftovers(outDir)
			for i := 0; i < 50 && len(left) > 0; i++ {
				time.Sleep(20 * time.Millisecond)
				left = leftovers(outDir)
			}
			if len(left) > 0 {
				t.Errorf("still running after the command ended: %q", left)
			}
		})
	}
}

// TestSparse5GiB: a 5 GiB file with a few blocks of data stays sparse:
// the image holds its data blocks only, the image file takes no more of
// the host's disk than the filesystem uses, and the file reads back the
// same.
func TestSparse5GiB(t *testing.T) {
	requireTools(t)
	if testing.Short() {
		t.Skip("reads 5 GiB twice")
	}
	s := imagetest.NewStore(t)
	sp := s.Add(t, "sparse", func(p string) error {
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		f, err := os.Create(filepath.Join(p, "disk"))
		if err != nil {
			return err
		}
		defer f.Close()
		for _, off := range []int64{0, 2<<30 + 1, 4<<30 + 4095, 5<<30 - 3} {
			if _, err := f.WriteAt([]byte("data"), off); err != nil {
				return err
			}
		}
		return nil
	})
	s.Finish(t)
	img, res := buildImage(t, s, nil)
	sb, err := e2fs.ReadSuperblock(img)
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(img, &st); err != nil {
		t.Fatal(err)
	}
	used := int64(sb.UsedBlocks()) * 4096
	t.Logf("image of %d MiB, %d MiB used, %d MiB on the host; seconds %v",
		int64(sb.BlocksCount)*4096>>20, used>>20, st.Blocks*512>>20, res.Report.Seconds)
	if used > 64<<20 {
		t.Errorf("the filesystem uses %d MiB for 4 data blocks", used>>20)
	}
	if st.Blocks*512 > used+1<<20 {
		t.Errorf("the image file takes %d MiB of the host's disk, more than the %d MiB the filesystem uses", st.Blocks*512>>20, used>>20)
	}
	mnt := imagetest.Mount(t, img)
	var fst syscall.Stat_t
	if err := syscall.Stat(filepath.Join(mnt, sp, "disk"), &fst); err != nil {
		t.Fatal(err)
	}
	if fst.Size != 5<<30+1 || fst.Blocks*512 > 64<<10 {
		t.Errorf("in the image: size %d, %d bytes allocated; want 5 GiB in 4 blocks", fst.Size, fst.Blocks*512)
	}
	imagetest.CompareImage(t, mnt, s, imagetest.Want{Time: 1})
}

// mkdirChain makes the directories of a relative path under base, one
// component at a time, so that the path may be longer than the kernel
// takes in one call; it returns the deepest directory's descriptor.
func mkdirChain(t *testing.T, base string, rel []string) int {
	t.Helper()
	fd, err := unix.Open(base, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rel {
		if err := unix.Mkdirat(fd, c, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, c, unix.O_DIRECTORY|unix.O_RDONLY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	return fd
}

// deepPath returns path components that, joined with '/', take exactly
// n bytes: 200 bytes each at most, each with a distinct start.
func deepPath(n int) []string {
	var parts []string
	for i := 0; n > 0; i++ {
		l := n
		if l > 200 {
			l = 200
			if n-l-1 < 4 {
				l = n - 5
			}
		}
		parts = append(parts, fmt.Sprintf("%03d", i)+strings.Repeat("d", l-3))
		n -= l + 1
	}
	return parts
}

// TestLongPaths: a store file at the longest path the host allows (4095
// bytes with the root) goes into the image; a registration path of 9000
// bytes (more than a debugfs line, entered with chained cd commands) too;
// a host path longer than the kernel takes is an error naming the store
// path.
func TestLongPaths(t *testing.T) {
	requireTools(t)
	s := imagetest.NewStore(t)
	sp := s.Add(t, "deep", func(p string) error { return os.Mkdir(p, 0o755) })
	host := s.Host(sp)
	rel := deepPath(4095 - len(host) - len("/") - len("/file"))
	fd := mkdirChain(t, host, rel)
	if err := unix.Close(fd); err != nil {
		t.Fatal(err)
	}
	deepest := filepath.Join(append([]string{host}, append(rel, "file")...)...)
	if len(deepest) != 4095 {
		t.Fatalf("deepest path of %d bytes", len(deepest))
	}
	if err := os.WriteFile(deepest, []byte("deep\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	s.Finish(t)
	regPath := "/" + strings.Join(deepPath(9000), "/") + "/registration"
	img, _ := buildImage(t, s, func(o *Options) { o.RegistrationPath = regPath })
	mnt := imagetest.Mount(t, img)
	if len(mnt) > len(s.Root) {
		t.Fatalf("mount point %s longer than the store root %s: the deep file cannot be read back", mnt, s.Root)
	}
	if diffs := imagetest.CompareTree(host, filepath.Join(mnt, sp), imagetest.Want{Time: 1}); len(diffs) > 0 {
		t.Errorf("%s differs:\n%s", sp, strings.Join(diffs, "\n"))
	}
	// The registration, read one directory at a time.
	fd, err := unix.Open(mnt, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(strings.TrimPrefix(regPath, "/"), "/")
	for _, c := range parts[:len(parts)-1] {
		next, err := unix.Openat(fd, c, unix.O_DIRECTORY|unix.O_RDONLY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatalf("registration directory %q: %v", c, err)
		}
		fd = next
	}
	rfd, err := unix.Openat(fd, "registration", unix.O_RDONLY, 0)
	unix.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
	reg := os.NewFile(uintptr(rfd), "registration")
	defer reg.Close()
	b, err := io.ReadAll(reg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte(sp+"\nsha256:")) {
		t.Errorf("registration at the %d-byte path: %q", len(regPath), b)
	}

	// One byte more than the kernel takes.
	s2 := imagetest.NewStore(t)
	sp2 := s2.Add(t, "deeper", func(p string) error { return os.Mkdir(p, 0o755) })
	s2.Finish(t) // it cannot walk a path that long
	fd = mkdirChain(t, s2.Host(sp2), deepPath(4096-len(s2.Host(sp2))-len("/")))
	unix.Close(fd)
	runFault(t, faultCase{name: "too long", store: func(*testing.T) *imagetest.Store { return s2 },
		want: []string{"store path " + sp2 + ": lstat " + s2.Host(sp2) + "/", ": file name too long"}})
}

// randomName is a name of 1 to 255 bytes of anything a store may hold
// and debugfs can carry (all bytes but '/', NUL, '\n' and '\r'), often
// short, sometimes one of the hostile names.
func randomName(rng *rand.Rand) string {
	for {
		var name string
		switch rng.Intn(6) {
		case 0:
			name = hostileNames[rng.Intn(len(hostileNames))]
		case 1:
			b := make([]byte, 1+rng.Intn(255))
			for i := range b {
				b[i] = byte(1 + rng.Intn(255))
			}
			name = string(b)
		default:
			const chars = "abcdefghijklmnopqrstuvwxyz0123456789._-+ \"'#!<>"
			b := make([]byte, 1+rng.Intn(20))
			for i := range b {
				b[i] = chars[rng.Intn(len(chars))]
			}
			name = string(b)
		}
		name = strings.Map(func(r rune) rune {
			if r == '/' || r == 0 || r == '\n' || r == '\r' {
				return 'x'
			}
			return r
		}, name)
		if len(name) > 255 {
			name = name[:255]
		}
		if name != "." && name != ".." && !strings.HasPrefix(name, "..") {
			return name
		}
	}
}

// randomContent is a file's content: empty, small, with runs of zeros, or
// larger.
func randomContent(rng *rand.Rand) []byte {
	switch rng.Intn(8) {
	case 0:
		return nil
	case 1:
		b := make([]byte, 4096*(1+rng.Intn(40)))
		rng.Read(b[:100])
		rng.Read(b[len(b)-100:])
		return b
	case 2:
		b := make([]byte, 1<<20+rng.Intn(1<<20))
		rng.Read(b)
		return b
	default:
		b := make([]byte, rng.Intn(20000))
		rng.Read(b)
		return b
	}
}

// randomTree fills dir with a random tree: files, empty and full
// directories, symlinks with any target, hard links to earlier files,
// sometimes a directory large enough to be staged.
func randomTree(rng *rand.Rand, dir string, depth int, files *[]string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	n := rng.Intn(12)
	if rng.Intn(15) == 0 {
		n = 300 + rng.Intn(1500)
	}
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, randomName(rng))
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		var err error
		switch k := rng.Intn(10); {
		case k < 5 || n > 100:
			err = os.WriteFile(p, randomContent(rng), os.FileMode(0o444|rng.Intn(2)*0o111))
			*files = append(*files, p)
		case k < 7 && depth < 4:
			err = randomTree(rng, p, depth+1, files)
		case k < 9:
			target := randomName(rng)
			if rng.Intn(3) == 0 {
				target = strings.Repeat(target+"/", 1+rng.Intn(10))
			}
			if len(target) > 4000 {
				target = target[:4000]
			}
			err = os.Symlink(target, p)
		case len(*files) > 0:
			err = os.Link((*files)[rng.Intn(len(*files))], p)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// TestRandomTrees builds images of random trees with random options and
// checks each: the round trip through a loop mount, that the image never
// ran out of space (no second build), and that the plan's count of
// blocks is never below what the content took in the image.
func TestRandomTrees(t *testing.T) {
	requireTools(t)
	trees := 20
	if testing.Short() {
		trees = 4
	}
	// The same trees on every run; MKEXT4FS_TREE_SEED=time explores.
	seed := int64(6)
	switch v := os.Getenv("MKEXT4FS_TREE_SEED"); v {
	case "":
	case "time":
		seed = time.Now().UnixNano()
	default:
		var err error
		if seed, err = strconv.ParseInt(v, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("seed %d (MKEXT4FS_TREE_SEED=%d runs these trees again)", seed, seed)
	rng := rand.New(rand.NewSource(seed))
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < trees; i++ {
		if time.Now().After(deadline) {
			t.Logf("time is up after %d trees", i)
			break
		}
		treeSeed := rng.Int63()
		t.Run(fmt.Sprint(treeSeed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(treeSeed))
			s := imagetest.NewStore(t)
			var files []string
			for j, paths := 0, 1+rng.Intn(4); j < paths; j++ {
				s.Add(t, fmt.Sprintf("p%d", j), func(p string) error {
					switch rng.Intn(8) {
					case 0:
						return os.WriteFile(p, randomContent(rng), 0o444)
					case 1:
						return os.Symlink(randomName(rng), p)
					}
					return randomTree(rng, p, 0, &files)
				})
			}
			s.Finish(t)
			var log bytes.Buffer
			want := imagetest.Want{Time: 1 + rng.Int63n(1<<31)}
			out := filepath.Join(t.TempDir(), "img")
			o := defaults(s, out)
			o.Log = &log
			o.Timestamp = want.Time
			o.Optimise = rng.Intn(2) == 0
			want.Optimise = o.Optimise
			o.Headroom = []int64{0, 1 << 20, 16 << 20}[rng.Intn(3)]
			o.ExtraInodes = []int64{0, 100, 4096}[rng.Intn(3)]
			if rng.Intn(2) == 0 {
				o.UID, o.GID = 0, 30000
				want.UID, want.GID = 0, 30000
			}
			if rng.Intn(3) == 0 {
				o.Features = Profiles["legacy"]
			}
			if rng.Intn(2) == 0 {
				o.StageBytes = 4096
			}
			o.BulkBlocks = []int64{-1, 1, 0}[rng.Intn(3)]
			t.Logf("optimise %v, headroom %d, extra inodes %d, owner %d:%d, features %v, stage bytes %d, bulk blocks %d",
				o.Optimise, o.Headroom, o.ExtraInodes, o.UID, o.GID, o.Features, o.StageBytes, o.BulkBlocks)
			if _, err := Build(context.Background(), o); err != nil {
				t.Fatalf("build: %v\n%s", err, log.String())
			}
			if strings.Contains(log.String(), "building again") {
				t.Errorf("the image ran out of space once:\n%s", log.String())
			}
			mnt := imagetest.Mount(t, out)
			imagetest.CompareImage(t, mnt, s, want)

			sb, err := e2fs.ReadSuperblock(out)
			if err != nil {
				t.Fatal(err)
			}
			// The plan the build made: with bulk files, every block of
			// theirs counts (those of zeros are punched out afterwards).
			switch {
			case o.BulkBlocks == 0:
				o.BulkBlocks = DefaultBulkBlocks
				fallthrough
			case o.BulkBlocks > 0:
				o.emptyDir = t.TempDir()
			}
			prep, err := Prepare(context.Background(), &o)
			if err != nil {
				t.Fatal(err)
			}
			need := prep.Tree.Need(plan.Geometry{MetadataCsum: sb.Has("metadata_csum")})
			took := contentBlocks(t, mnt)
			t.Logf("content took %d blocks, the plan has %d (%+d)", took, need.Blocks(), need.Blocks()-took)
			if need.Blocks() < took {
				t.Errorf("the plan has %d blocks for content that took %d", need.Blocks(), took)
			}
		})
	}
}

// contentBlocks adds up the 4 KiB blocks the inodes of a mounted image
// hold (data, extent tree, directory and symlink blocks), each inode
// once, without lost+found and the root's first block, which mkfs makes.
func contentBlocks(t *testing.T, mnt string) int64 {
	t.Helper()
	seen := map[uint64]bool{}
	var sectors int64
	err := filepath.WalkDir(mnt, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == filepath.Join(mnt, "lost+found") {
			return filepath.SkipDir
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		if !seen[st.Ino] {
			seen[st.Ino] = true
			sectors += st.Blocks
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sectors/8 - 1
}
