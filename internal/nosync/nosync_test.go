package nosync

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// probeEnv makes the test binary the probe: it makes the calls the filter
// answers, and one it lets through, on a bad descriptor, and prints what
// they returned and what the kernel says of the process.
const probeEnv = "NOSYNC_TEST_PROBE"

func TestMain(m *testing.M) {
	if handled, err := Serve(os.Args); handled {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(127)
	}
	if os.Getenv(probeEnv) != "" {
		probe()
		os.Exit(3)
	}
	os.Exit(m.Run())
}

func probe() {
	result := func(err error) string {
		if err == nil {
			return "ok"
		}
		return unix.ErrnoName(err.(unix.Errno))
	}
	status, _ := os.ReadFile("/proc/self/status")
	seccomp := regexp.MustCompile(`(?m)^Seccomp:\s*(\d+)$`).FindSubmatch(status)
	wd, _ := os.Getwd()
	fmt.Printf("fsync=%s fdatasync=%s syncfs=%s close=%s seccomp=%s wd=%s env=%s\n",
		result(unix.Fsync(-1)), result(unix.Fdatasync(-1)), result(unix.Syncfs(-1)), result(unix.Close(-1)),
		seccomp[1], wd, os.Getenv(probeEnv))
}

func probeCommand(t *testing.T) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), probeEnv+"=here")
	return cmd
}

func runProbe(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("probe: %v (want exit status 3): %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestWrap(t *testing.T) {
	if !Enabled() {
		t.Skip("no filter for this architecture")
	}
	plain := probeCommand(t)
	got := runProbe(t, plain)
	if !strings.HasPrefix(got, "fsync=EBADF fdatasync=EBADF syncfs=EBADF close=EBADF seccomp=") || !strings.HasSuffix(got, " wd="+plain.Dir+" env=here") {
		t.Fatalf("without the filter the probe says\n%s", got)
	}

	wrapped := probeCommand(t)
	Wrap(wrapped)
	if len(wrapped.Args) < 3 || wrapped.Args[1] != execArg {
		t.Fatalf("Wrap left the command as it was: %q", wrapped.Args)
	}
	got = runProbe(t, wrapped)
	// The three calls succeed on a descriptor that is not open: the
	// kernel never ran them. close still runs, and fails.
	want := fmt.Sprintf("fsync=ok fdatasync=ok syncfs=ok close=EBADF seccomp=2 wd=%s env=here", wrapped.Dir)
	if got != want {
		t.Fatalf("with the filter the probe says\n%s\nwant\n%s", got, want)
	}
}

func TestWrapExecFails(t *testing.T) {
	if !Enabled() {
		t.Skip("no filter for this architecture")
	}
	missing := filepath.Join(t.TempDir(), "no-such-tool")
	cmd := exec.Command(missing, "-V")
	Wrap(cmd)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 127 || !strings.Contains(string(out), "exec "+missing+": no such file or directory") {
		t.Fatalf("got %v: %s; want exit status 127 naming %s", err, out, missing)
	}
}

func TestProgram(t *testing.T) {
	p := program()
	// Every jump lands inside the program, and both returns are reachable.
	for i, ins := range p {
		if ins.Code&0x07 == unix.BPF_JMP {
			for _, off := range []uint8{ins.Jt, ins.Jf} {
				if i+1+int(off) >= len(p) {
					t.Fatalf("instruction %d jumps past the end", i)
				}
			}
		}
	}
	if last := p[len(p)-1]; last.K != unix.SECCOMP_RET_ERRNO {
		t.Fatalf("the last instruction returns %#x", last.K)
	}
}
