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
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Tools are the programs the build runs. Empty fields are looked up on
// PATH (and in /usr/sbin and /sbin, where Debian keeps e2fsprogs).
type Tools struct {
	Mke2fs, Debugfs, E2fsck, Tune2fs, Resize2fs, Faketime string
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
		{&t.Faketime, []string{"faketime"}, "libfaketime (Debian: faketime)"},
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
	return nil
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

// E2fsprogsVersion asks mke2fs for its version, and, when Faketime is set,
// checks that faketime runs it: a faketime that fails would otherwise
// look like a failing mke2fs.
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
	if t.Faketime != "" {
		cmd := exec.CommandContext(ctx, t.Faketime, "-f", FaketimeSpec(0), t.Mke2fs, "-V")
		cmd.Env = baseEnv()
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			return Version{}, ctx.Err()
		}
		if err != nil {
			msg := fmt.Errorf("%s cannot run %s -V: %w", t.Faketime, t.Mke2fs, err)
			if line := firstLine(out); line != "" {
				msg = fmt.Errorf("%w: %s", msg, line)
			}
			return Version{}, msg
		}
		if !versionRE.Match(out) {
			return Version{}, fmt.Errorf("%s cannot run %s -V: no version in %q", t.Faketime, t.Mke2fs, firstLine(out))
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

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
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
		"E2FSPROGS_FAKE_TIME="+strconv.FormatInt(r.Time, 10),
		"FAKETIME_DONT_FAKE_MONOTONIC=1",
		"FAKETIME_NO_CACHE=1",
		"MKE2FS_CONFIG="+filepath.Join(r.ConfigDir, "mke2fs.conf"),
		"E2FSCK_CONFIG="+filepath.Join(r.ConfigDir, "e2fsck.conf"),
	)
	return env
}

// command makes the command for a tool run under faketime.
func (r *Runner) command(ctx context.Context, tool string, args ...string) *exec.Cmd {
	full := append([]string{"-f", FaketimeSpec(r.Time), tool}, args...)
	cmd := exec.CommandContext(ctx, r.Tools.Faketime, full...)
	cmd.Env = r.env()
	cmd.Dir = r.ConfigDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error {
		// End the whole group: faketime's child too.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 5 * time.Second
	if r.Verbose != nil {
		fmt.Fprintf(r.Verbose, "+ %s\n", strings.Join(append([]string{filepath.Base(tool)}, args...), " "))
	}
	return cmd
}

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
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() < 0 {
			if ctx.Err() != nil {
				return out.String(), -1, ctx.Err()
			}
			return out.String(), -1, &ToolError{Argv: append([]string{filepath.Base(tool)}, args...), Err: err, Output: out.String()}
		}
		code = ee.ExitCode()
		if last := lastLine(out.String()); code == 1 && caughtRE.MatchString(last) {
			// faketime exits 1 when its child was killed, which e2fsck
			// -y would pass for "errors corrected".
			return out.String(), code, &ToolError{Argv: append([]string{filepath.Base(tool)}, args...), Err: killedBy(last), Output: strings.TrimSuffix(strings.TrimSpace(out.String()), last)}
		}
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
