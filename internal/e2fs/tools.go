package e2fs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mkext4fs/mkext4fs/internal/nosync"
)

// Tools are the programs the build runs. Empty fields are looked up on
// PATH (and in /usr/sbin and /sbin, where Debian keeps e2fsprogs).
type Tools struct {
	Mke2fs, Debugfs, E2fsck, Tune2fs, Resize2fs string
	// Libfaketime is the libfaketime.so.1 preloaded into every tool;
	// empty: found beside the faketime program, or where distributions
	// install it. (The faketime wrapper itself is not used: it keeps a
	// POSIX semaphore named after its process ID, and one left behind by
	// a killed wrapper makes a later one with the same ID fail.)
	Libfaketime string
}

// Resolve fills in the paths of the tools, or names the one missing.
func (t *Tools) Resolve() error {
	for _, x := range []struct {
		field *string
		names []string
		pkg   string
	}{
		{&t.Mke2fs, []string{"mke2fs", "mkfs.ext4"}, "e2fsprogs"},
		{&t.Debugfs, []string{"debugfs"}, "e2fsprogs"},
		{&t.E2fsck, []string{"e2fsck", "fsck.ext4"}, "e2fsprogs"},
		{&t.Tune2fs, []string{"tune2fs"}, "e2fsprogs"},
		{&t.Resize2fs, []string{"resize2fs"}, "e2fsprogs"},
	} {
		if *x.field != "" {
			p, err := exec.LookPath(*x.field)
			if err != nil {
				return fmt.Errorf("%s: %w", *x.field, err)
			}
			*x.field = p
			continue
		}
		p, err := LookTool(x.names...)
		if err != nil {
			return fmt.Errorf("%s not found on PATH, /usr/sbin or /sbin: install %s", x.names[0], x.pkg)
		}
		*x.field = p
	}
	if t.Libfaketime != "" {
		if st, err := os.Stat(t.Libfaketime); err != nil || !st.Mode().IsRegular() {
			return fmt.Errorf("libfaketime %s: not a file", t.Libfaketime)
		}
		return nil
	}
	lib, err := FindLibfaketime()
	if err != nil {
		return err
	}
	t.Libfaketime = lib
	return nil
}

// FindLibfaketime looks for libfaketime.so.1: in the installation the
// faketime program on PATH belongs to (Nix: PREFIX/lib; Debian:
// PREFIX/lib/<arch>/faketime), then in the usual library directories.
func FindLibfaketime() (string, error) {
	var patterns []string
	if wrapper, err := exec.LookPath("faketime"); err == nil {
		prefixes := []string{filepath.Dir(filepath.Dir(wrapper))}
		if real, err := filepath.EvalSymlinks(wrapper); err == nil {
			prefixes = append(prefixes, filepath.Dir(filepath.Dir(real)))
		}
		for _, prefix := range prefixes {
			patterns = append(patterns,
				filepath.Join(prefix, "lib", "libfaketime.so.1"),
				filepath.Join(prefix, "lib", "faketime", "libfaketime.so.1"),
				filepath.Join(prefix, "lib", "*", "faketime", "libfaketime.so.1"),
				filepath.Join(prefix, "lib64", "faketime", "libfaketime.so.1"))
		}
	}
	patterns = append(patterns,
		"/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1",
		"/usr/lib64/faketime/libfaketime.so.1", "/usr/local/lib/faketime/libfaketime.so.1")
	for _, p := range patterns {
		matches, _ := filepath.Glob(p)
		for _, m := range matches {
			if st, err := os.Stat(m); err == nil && st.Mode().IsRegular() {
				return m, nil
			}
		}
	}
	return "", errors.New("libfaketime.so.1 not found beside faketime on PATH or in /usr/lib: install libfaketime (Debian: faketime) or give --libfaketime")
}

// LookTool finds the first of names on PATH or in /usr/sbin and /sbin,
// where Debian keeps e2fsprogs.
func LookTool(names ...string) (string, error) {
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			p := filepath.Join(dir, name)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	return "", exec.ErrNotFound
}

// Version is an e2fsprogs release.
type Version struct{ Major, Minor, Patch int }

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// Less orders versions.
func (v Version) Less(o Version) bool {
	if v.Major != o.Major {
		return v.Major < o.Major
	}
	if v.Minor != o.Minor {
		return v.Minor < o.Minor
	}
	return v.Patch < o.Patch
}

var versionRE = regexp.MustCompile(`mke2fs (\d+)\.(\d+)(?:\.(\d+))?`)

// MinVersion is the oldest e2fsprogs the build works with: root_owner,
// hash_seed and debugfs' lcd/ln/unlink as used here, and a mke2fs that
// keeps every -E option given in one list.
var MinVersion = Version{1, 43, 0}

// E2fsprogsVersion asks mke2fs for its version, and, when Libfaketime is
// set, checks that it runs with the library preloaded: a library that does
// not load would otherwise leave the tools on the real clock.
func (t *Tools) E2fsprogsVersion(ctx context.Context) (Version, error) {
	cmd := exec.CommandContext(ctx, t.Mke2fs, "-V")
	cmd.Env = baseEnv()
	out, err := cmd.CombinedOutput()
	m := versionRE.FindSubmatch(out)
	if m == nil {
		if err != nil {
			return Version{}, fmt.Errorf("%s -V: %w: %s", t.Mke2fs, err, firstLine(out))
		}
		return Version{}, fmt.Errorf("%s -V: no version in %q", t.Mke2fs, firstLine(out))
	}
	if t.Libfaketime != "" {
		// The dynamic loader only warns when it cannot preload a library,
		// and the tool then runs with the real clock: refuse that.
		cmd := exec.CommandContext(ctx, t.Mke2fs, "-V")
		cmd.Env = append(baseEnv(), "LD_PRELOAD="+t.Libfaketime, "FAKETIME="+FaketimeSpec(0))
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			return Version{}, ctx.Err()
		}
		if err != nil || bytes.Contains(out, []byte("ld.so")) || bytes.Contains(out, []byte("libfaketime")) || !versionRE.Match(out) {
			msg := fmt.Sprintf("%s -V with libfaketime %s preloaded", t.Mke2fs, t.Libfaketime)
			if err != nil {
				msg += ": " + err.Error()
			}
			return Version{}, fmt.Errorf("%s: %s", msg, strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", " | "))
		}
	}
	var v Version
	v.Major, _ = strconv.Atoi(string(m[1]))
	v.Minor, _ = strconv.Atoi(string(m[2]))
	if len(m[3]) > 0 {
		v.Patch, _ = strconv.Atoi(string(m[3]))
	}
	return v, nil
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// Runner runs the tools for one build.
type Runner struct {
	Tools Tools
	// Time is the fixed time every tool sees (seconds since the epoch).
	Time int64
	// ConfigDir holds the mke2fs.conf and e2fsck.conf the runner writes.
	ConfigDir string
	// Verbose, when set, receives every command line and debugfs command.
	Verbose io.Writer
	// Version is the e2fsprogs the tools come from, when known: it lets
	// the runner use options that older releases lack.
	Version Version
}

// baseEnv is the environment every tool starts from: nothing of the
// caller's but PATH.
func baseEnv() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"TZ=UTC",
		"LC_ALL=C",
		"LANG=C",
	}
}

// FaketimeSpec is the FAKETIME value that freezes the clock at t: an
// absolute date without '@' (with '@' libfaketime lets the clock run on),
// read in UTC since the runner sets TZ=UTC.
func FaketimeSpec(t int64) string {
	return time.Unix(t, 0).UTC().Format("2006-01-02 15:04:05")
}

func (r *Runner) env() []string {
	env := baseEnv()
	env = append(env,
		"LD_PRELOAD="+r.Tools.Libfaketime,
		"FAKETIME="+FaketimeSpec(r.Time),
		"E2FSPROGS_FAKE_TIME="+strconv.FormatInt(r.Time, 10),
		"FAKETIME_DONT_FAKE_MONOTONIC=1",
		"FAKETIME_NO_CACHE=1",
		"MKE2FS_CONFIG="+filepath.Join(r.ConfigDir, "mke2fs.conf"),
		"E2FSCK_CONFIG="+filepath.Join(r.ConfigDir, "e2fsck.conf"),
	)
	return env
}

// command makes the command for a tool run with libfaketime preloaded.
func (r *Runner) command(ctx context.Context, tool string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Env = r.env()
	cmd.Dir = r.ConfigDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error {
		// End the whole group: anything the tool started too.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 5 * time.Second
	// The tools' fsyncs only wait for the page cache: see package nosync.
	nosync.Wrap(cmd)
	if r.Verbose != nil {
		fmt.Fprintf(r.Verbose, "+ %s\n", strings.Join(append([]string{filepath.Base(tool)}, args...), " "))
	}
	return cmd
}

// start starts a command made by Runner.command. Its Pdeathsig is sent
// when the thread that started the child ends, not the process, and Go
// ends a thread whose goroutine exits locked to it (as internal/sched's
// do): so every child is started from one thread that lives as long as
// the program.
func start(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawn = make(chan spawnRequest)
		go func() {
			runtime.LockOSThread() // and never unlocked
			for req := range spawn {
				req.done <- req.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	spawn <- spawnRequest{cmd, done}
	return <-done
}

type spawnRequest struct {
	cmd  *exec.Cmd
	done chan<- error
}

var (
	spawnOnce sync.Once
	spawn     chan spawnRequest
)

// ToolError is a tool that failed: its command line, how it ended and what
// it printed.
type ToolError struct {
	Argv   []string
	Err    error
	Output string
}

func (e *ToolError) Error() string {
	out := strings.TrimSpace(e.Output)
	if len(out) > 2000 {
		out = "…" + out[len(out)-2000:]
	}
	msg := fmt.Sprintf("%s: %v", strings.Join(e.Argv, " "), e.Err)
	if out != "" {
		msg += ": " + strings.ReplaceAll(out, "\n", " | ")
	}
	return msg
}

func (e *ToolError) Unwrap() error { return e.Err }

// run runs a tool, returning its combined output; a non-zero exit that is
// not in okCodes is a ToolError.
func (r *Runner) run(ctx context.Context, tool string, okCodes []int, args ...string) (string, int, error) {
	cmd := r.command(ctx, tool, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := start(cmd)
	if err == nil {
		err = cmd.Wait()
	}
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() < 0 {
			if ctx.Err() != nil {
				return out.String(), -1, ctx.Err()
			}
			return out.String(), -1, &ToolError{Argv: append([]string{filepath.Base(tool)}, args...), Err: exitReason(err), Output: out.String()}
		}
		code = ee.ExitCode()
		ok := false
		for _, c := range okCodes {
			ok = ok || c == code
		}
		if !ok {
			return out.String(), code, &ToolError{Argv: append([]string{filepath.Base(tool)}, args...), Err: err, Output: out.String()}
		}
	}
	return out.String(), code, nil
}

// exitReason words how a tool ended: "ended by a signal (killed)" for one
// killed by a signal, else the error as it is.
func exitReason(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Errorf("ended by a signal (%v)", ws.Signal())
		}
	}
	return err
}

// scanLines calls fn for every line of r.
func scanLines(r io.Reader, fn func(line string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if err := fn(sc.Text()); err != nil {
			return err
		}
	}
	return sc.Err()
}
