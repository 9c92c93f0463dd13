package e2fs

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// newRunner resolves the real tools and writes a configuration into a
// directory of the test's own.
func newRunner(t *testing.T) *Runner {
	t.Helper()
	// internal/testutil imports this package: its RequireTool, written
	// out (skip locally, fail in CI).
	for _, tool := range []string{"mke2fs", "debugfs", "e2fsck", "tune2fs", "resize2fs", "faketime"} {
		if _, err := LookTool(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not available: %v", tool, err)
			}
			t.Skipf("%s not available: %v", tool, err)
		}
	}
	r := &Runner{Time: 1, ConfigDir: t.TempDir()}
	if err := r.Tools.Resolve(); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteConfig([]string{"has_journal", "extent", "64bit", "flex_bg", "sparse_super", "dir_index", "filetype"}); err != nil {
		t.Fatal(err)
	}
	return r
}

// newImage makes an empty filesystem of 16 MiB.
func newImage(t *testing.T, r *Runner) string {
	t.Helper()
	image := filepath.Join(t.TempDir(), "image")
	if err := os.WriteFile(image, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(image, 16<<20); err != nil {
		t.Fatal(err)
	}
	err := r.Mkfs(context.Background(), image, MkfsOptions{Blocks: 4096, Inodes: 1024, Label: "t", UUID: "44444444-4444-4444-8888-888888888888"})
	if err != nil {
		t.Fatal(err)
	}
	return image
}

// script writes an executable shell script.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tool")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDebugfsChecksEveryLine: a script that works gives no error; a
// command that fails, however debugfs words it, is reported with its line
// and text, even though debugfs itself exits 0.
func TestDebugfsChecksEveryLine(t *testing.T) {
	r := newRunner(t)
	host := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(host, []byte("content"), 0o444); err != nil {
		t.Fatal(err)
	}
	good := []string{"mkdir a", "cd a", "lcd " + filepath.Dir(host), "write f f", "symlink l target", "sif f mode 0100444", "cd /", "mkdir s", "rmdir s"}
	if err := r.Debugfs(context.Background(), newImage(t, r), good, nil); err != nil {
		t.Fatalf("good script: %v", err)
	}
	for _, tc := range []struct {
		name string
		bad  string
	}{
		{"no such directory", "cd missing"},
		{"unknown command", "frobnicate a"},
		{"unbalanced quote", `mkdir "a`},
		{"missing host file", "write /nonexistent/file x"},
		{"name exists", "mkdir a"},
		{"wrong argument count", "symlink onlyone"},
		{"bad field", "sif a nosuchfield 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := []string{"mkdir a", tc.bad, "mkdir b"}
			err := r.Debugfs(context.Background(), newImage(t, r), lines, nil)
			var de *DebugfsError
			if !errors.As(err, &de) {
				t.Fatalf("got %v, want a DebugfsError", err)
			}
			if de.Line != 2 || de.Command != tc.bad || de.Message == "" {
				t.Errorf("error on line %d %q: %q, want line 2 %q", de.Line, de.Command, de.Message, tc.bad)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans several lines: %q", err)
			}
		})
	}
}

// TestDebugfsEndsEarly: a debugfs that stops, is killed or fails before
// it has run every command is an error, never a silent success.
func TestDebugfsEndsEarly(t *testing.T) {
	r := newRunner(t)
	real := r.Tools.Debugfs
	lines := []string{"mkdir a", "mkdir b", "mkdir c", "mkdir d"}
	for _, tc := range []struct {
		name, body, want string
	}{
		{"stops after two commands", "head -n 2 | sed 's/^/debugfs: /'\n", "ran 2 of 4 commands"},
		{"killed after two commands", "head -n 2 | sed 's/^/debugfs: /'\nkill -9 $$\n", "ended by a signal (killed) after 2 of 4 commands"},
		{"exits 1 after all", "sed 's/^/debugfs: /'\nexit 1\n", "exit status 1"},
		// debugfs gets three commands, then waits for more and is killed.
		{"killed while running", "exec 3<&0\n{ head -n 3 <&3; exec sleep 1 3<&-; } 2>/dev/null | \"" + real + `" "$@" & pid=$!` + "\nsleep 0.3; kill -9 $pid; exec 2>/dev/null; wait $pid\n", "exit status 137 after 3 of 4 commands"},
		{"prints something unexpected", "echo 'debugfs 1.47.0 (5-Feb-2023)'; echo 'Segmentation fault'\n", "Segmentation fault"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rr := *r
			rr.Tools.Debugfs = script(t, tc.body)
			err := rr.Debugfs(context.Background(), newImage(t, r), lines, nil)
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// processesIn lists the live processes whose working directory is dir or
// below it: the tools run in the runner's ConfigDir.
func processesIn(dir string) []string {
	var found []string
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", p.Name(), "cwd"))
		if err != nil || (cwd != dir && !strings.HasPrefix(cwd, dir+"/")) {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "stat"))
		if f := strings.Fields(string(stat)); len(f) > 2 && (f[2] == "Z" || f[2] == "X") {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		found = append(found, p.Name()+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	return found
}

// TestCancelEndsTools: cancelling the context ends the tool and the
// processes it started, promptly, whatever the tool does.
func TestCancelEndsTools(t *testing.T) {
	r := newRunner(t)
	// A tool that ignores SIGTERM and SIGINT and has a child of its own.
	stubborn := script(t, "trap '' TERM INT\nsleep 60 &\nsleep 60\n")
	for _, tc := range []struct {
		name string
		run  func(ctx context.Context, r *Runner) error
	}{
		{"debugfs", func(ctx context.Context, r *Runner) error {
			return r.Debugfs(ctx, "image", []string{"mkdir a"}, nil)
		}},
		{"e2fsck", func(ctx context.Context, r *Runner) error { return r.Optimize(ctx, "image") }},
		{"mke2fs", func(ctx context.Context, r *Runner) error { return r.Mkfs(ctx, "image", MkfsOptions{Blocks: 1}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rr := *r
			rr.ConfigDir = t.TempDir()
			rr.Tools.Debugfs, rr.Tools.E2fsck, rr.Tools.Mke2fs = stubborn, stubborn, stubborn
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- tc.run(ctx, &rr) }()
			deadline := time.Now().Add(5 * time.Second)
			for len(processesIn(rr.ConfigDir)) < 3 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := len(processesIn(rr.ConfigDir)); n < 3 {
				t.Fatalf("%d processes started, want the tool and its two children", n)
			}
			start := time.Now()
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("got %v, want context.Canceled", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("still running 10 s after the cancel")
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v to end", d)
			}
			// The tool's own child left its process group's reach only if
			// it was never killed.
			for i := 0; i < 100 && len(processesIn(rr.ConfigDir)) > 0; i++ {
				time.Sleep(10 * time.Millisecond)
			}
			if left := processesIn(rr.ConfigDir); len(left) > 0 {
				t.Errorf("still running after the cancel: %q", left)
			}
		})
	}
}

// TestToolEnvironment: the tools see a fixed environment and a frozen
// clock at the build's time, whatever the caller's environment holds.
func TestToolEnvironment(t *testing.T) {
	r := newRunner(t)
	r.Time = 1234567890
	for k, v := range map[string]string{
		"TZ": "Asia/Tokyo", "LC_ALL": "ja_JP.UTF-8", "LANG": "ja_JP.UTF-8", "FAKETIME": "@2033-01-01 00:00:00",
		"E2FSPROGS_FAKE_TIME": "2000000000", "SOURCE_DATE_EPOCH": "315532800", "MKE2FS_CONFIG": "/etc/evil.conf",
		"E2FSCK_CONFIG": "/etc/evil.conf", "MKE2FS_SYNC": "1", "MKE2FS_FIRST_META_BG": "1", "MKE2FS_DEVICE_SECTSIZE": "512",
		"E2FSCK_FORCE_INTERACTIVE": "1", "BLKID_FILE": "/tmp/x", "HOME": "/root/elsewhere", "DEBUGFS_PAGER": "cat",
	} {
		t.Setenv(k, v)
	}
	tool := script(t, "env\ndate +%s\nsleep 1.1\ndate +%s\n")
	out, _, err := r.run(context.Background(), tool, nil)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	var dates []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			env[k] = v
		} else {
			dates = append(dates, l)
		}
	}
	want := map[string]string{
		"TZ": "UTC", "LC_ALL": "C", "LANG": "C", "E2FSPROGS_FAKE_TIME": "1234567890",
		"FAKETIME":      FaketimeSpec(1234567890),
		"MKE2FS_CONFIG": filepath.Join(r.ConfigDir, "mke2fs.conf"), "E2FSCK_CONFIG": filepath.Join(r.ConfigDir, "e2fsck.conf"),
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s=%q, want %q", k, env[k], v)
		}
	}
	allowed := map[string]bool{"PATH": true, "PWD": true, "SHLVL": true, "_": true, "LD_PRELOAD": true, "OLDPWD": true}
	for k := range env {
		if _, ok := want[k]; !ok && !allowed[k] && !strings.HasPrefix(k, "FAKETIME_") {
			t.Errorf("the tool sees %s=%q", k, env[k])
		}
	}
	if len(dates) != 2 || dates[0] != "1234567890" || dates[1] != dates[0] {
		t.Errorf("the tool's clock reads %q, want 1234567890 twice (frozen)", dates)
	}
}

// TestE2fsprogsVersion reads what mke2fs -V prints, and fails with the
// tool named when it prints nothing useful.
func TestE2fsprogsVersion(t *testing.T) {
	for _, tc := range []struct {
		body string
		want string
	}{
		{"echo 'mke2fs 1.47.3 (8-Jul-2025)' >&2; echo '\tUsing EXT2FS Library version 1.47.3' >&2\n", "1.47.3"},
		{"echo 'mke2fs 1.42 (29-Nov-2011)'\n", "1.42.0"},
		{"echo 'mke2fs 1.47.4-WIP (1-Jan-2026)'\n", "1.47.4"},
		{"exit 1\n", "error"},
		{"echo 'usage: something else'\n", "error"},
	} {
		tools := Tools{Mke2fs: script(t, tc.body)}
		v, err := tools.E2fsprogsVersion(context.Background())
		switch {
		case tc.want == "error" && err == nil:
			t.Errorf("%q: version %s, want an error", tc.body, v)
		case tc.want == "error" && !strings.Contains(err.Error(), tools.Mke2fs):
			t.Errorf("%q: error does not name the tool: %v", tc.body, err)
		case tc.want != "error" && (err != nil || v.String() != tc.want):
			t.Errorf("%q: %v, %v; want %s", tc.body, v, err, tc.want)
		}
	}
}

// TestResolveNamesTheTool: a tool that is not there is named with the
// package to install, or, given as a path, with the path.
func TestResolveNamesTheTool(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	missing := filepath.Join(t.TempDir(), "no-libfaketime.so.1")
	tools := Tools{Mke2fs: "/bin/true", Debugfs: "/bin/true", E2fsck: "/bin/true", Tune2fs: "/bin/true", Resize2fs: "/bin/true", Libfaketime: missing}
	if err := tools.Resolve(); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing libfaketime given as a path: %v", err)
	}
	noTool := filepath.Join(t.TempDir(), "no-resize2fs")
	tools = Tools{Mke2fs: "/bin/true", Debugfs: "/bin/true", E2fsck: "/bin/true", Tune2fs: "/bin/true", Resize2fs: noTool}
	if err := tools.Resolve(); err == nil || !strings.Contains(err.Error(), noTool) {
		t.Errorf("missing resize2fs given as a path: %v", err)
	}
}

// TestFindLibfaketime: the library is found beside the faketime program
// of a Nix-style installation (PREFIX/bin, PREFIX/lib).
func TestFindLibfaketime(t *testing.T) {
	prefix := t.TempDir()
	for _, d := range []string{"bin", "lib"} {
		if err := os.Mkdir(filepath.Join(prefix, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(prefix, "bin", "faketime"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	lib := filepath.Join(prefix, "lib", "libfaketime.so.1")
	if err := os.WriteFile(lib, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", filepath.Join(prefix, "bin"))
	if got, err := FindLibfaketime(); err != nil || got != lib {
		t.Errorf("FindLibfaketime() = %q, %v; want %q", got, err, lib)
	}
}

// TestKilledTools: a tool killed by a signal is an error that says so.
func TestKilledTools(t *testing.T) {
	r := newRunner(t)
	killed := script(t, "kill -9 $$\n")
	image := newImage(t, r)
	for name, run := range map[string]func(r *Runner) error{
		"e2fsck -fyD": func(r *Runner) error { return r.Optimize(context.Background(), image) },
		"e2fsck -fn":  func(r *Runner) error { return r.Check(context.Background(), image) },
		"tune2fs":     func(r *Runner) error { return r.EnableFeatures(context.Background(), image, []string{"metadata_csum"}) },
		"mke2fs":      func(r *Runner) error { return r.Mkfs(context.Background(), image, MkfsOptions{Blocks: 4096}) },
		"resize2fs":   func(r *Runner) error { return r.Shrink(context.Background(), image, 2048) },
	} {
		rr := *r
		rr.Tools = Tools{Mke2fs: killed, Debugfs: killed, E2fsck: killed, Tune2fs: killed, Resize2fs: killed, Libfaketime: r.Tools.Libfaketime}
		err := run(&rr)
		if err == nil || !strings.Contains(err.Error(), `ended by a signal (killed)`) {
			t.Errorf("%s killed: %v", name, err)
		}
	}
}

// TestFaketimeChecked: a libfaketime the dynamic loader does not preload
// (it only warns, and the tool would run on the real clock) is an error
// before anything runs.
func TestFaketimeChecked(t *testing.T) {
	mke2fs := script(t, "echo 'mke2fs 1.47.0 (5-Feb-2023)'\n")
	notALibrary := filepath.Join(t.TempDir(), "libfaketime.so.1")
	if err := os.WriteFile(notALibrary, []byte("not an ELF file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tools := Tools{Mke2fs: mke2fs, Libfaketime: notALibrary}
	_, err := tools.E2fsprogsVersion(context.Background())
	if err == nil || !strings.Contains(err.Error(), notALibrary) || !strings.Contains(err.Error(), "cannot be preloaded") {
		t.Errorf("a file that is no library: %v", err)
	}
	if lib, err := FindLibfaketime(); err == nil {
		tools := Tools{Mke2fs: mke2fs, Libfaketime: lib}
		if _, err := tools.E2fsprogsVersion(context.Background()); err != nil {
			t.Errorf("the real libfaketime: %v", err)
		}
	}
}

// TestChildOutlivesStartingThread: a tool started from a goroutine whose
// thread then ends (a goroutine that exits locked to its thread, as
// internal/sched's do) keeps running: Pdeathsig follows the thread that
// started the child, so children start from a thread that never ends.
func TestChildOutlivesStartingThread(t *testing.T) {
	r := &Runner{ConfigDir: t.TempDir()}
	var cmd *exec.Cmd
	for cmd == nil {
		started := make(chan *exec.Cmd, 1)
		go func() {
			runtime.LockOSThread()
			if syscall.Gettid() == syscall.Getpid() {
				// Go keeps the main thread: try on another.
				runtime.UnlockOSThread()
				started <- nil
				return
			}
			c := r.command(context.Background(), "/bin/sleep", "30")
			if err := start(c); err != nil {
				t.Error(err)
				c = &exec.Cmd{}
			}
			started <- c // and the thread ends
		}()
		cmd = <-started
	}
	if cmd.Process == nil {
		return
	}
	defer cmd.Process.Kill()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		t.Fatalf("the tool ended with the thread that started it: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
}

// TestE2fsckFullInodeCounts: e2fsck takes -E inode_count_fullmap from the
// release that has it, and the host's e2fsck runs clean with it.
func TestE2fsckFullInodeCounts(t *testing.T) {
	for _, c := range []struct {
		v    Version
		want bool
	}{{Version{}, false}, {Version{1, 43, 5}, false}, {Version{1, 43, 6}, true}, {Version{1, 47, 0}, true}, {Version{2, 0, 0}, true}} {
		args := (&Runner{Version: c.v}).e2fsckArgs("-f", "-n", "image")
		want := "-f -n image"
		if c.want {
			want = "-f -n -E inode_count_fullmap image"
		}
		if got := strings.Join(args, " "); got != want {
			t.Errorf("e2fsprogs %s: e2fsck %q", c.v, args)
		}
	}
	r := newRunner(t)
	v, err := r.Tools.E2fsprogsVersion(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r.Version = v
	image := newImage(t, r)
	if err := r.Optimize(context.Background(), image); err != nil {
		t.Fatalf("e2fsprogs %s: %v", v, err)
	}
	if err := r.Check(context.Background(), image); err != nil {
		t.Fatalf("e2fsprogs %s: %v", v, err)
	}
}
