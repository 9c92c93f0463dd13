package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mkext4fs/mkext4fs/internal/testutil"
	"github.com/mkext4fs/mkext4fs/pkg/imagecheck/imagechecktest"
)

func runVerifyCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := Run(context.Background(), Env{Args: args, Stdout: &out, Stderr: &errb, Version: "test"})
	code = ExitCode(err, &errb)
	return out.String(), errb.String(), code
}

func copyVerifyImage(t *testing.T, src string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "copy.img")
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestVerifyCommand(t *testing.T) {
	debugfs := testutil.RequireTool(t, "debugfs")
	f := imagechecktest.NewFixture(t, imagechecktest.Options{NewlineNames: true})
	img := f.MkfsImage(t)
	top := imagechecktest.TopPath

	tests := []struct {
		name       string
		corrupt    string // debugfs -w script
		args       []string
		wantCode   int
		wantStdout []string // regular expressions
		wantStderr string
	}{
		{
			name:       "match",
			args:       []string{"--root", f.Root, "--files", f.Files},
			wantStdout: []string{`^\S+ matches: 3 store paths, \d+ entries\n$`},
		},
		{
			name:       "match with defaults but --root",
			args:       []string{"--root", f.Root},
			wantStdout: []string{`matches`},
		},
		{
			name:       "one difference",
			corrupt:    "sif " + top + "/bin/hello mode 0100755\n",
			args:       []string{"--root", f.Root},
			wantCode:   1,
			wantStdout: []string{`(?m)^` + regexp.QuoteMeta(top) + `/bin/hello: mode 0755, the source has 0555$`},
			wantStderr: `does not match the closure: 1 difference\n$`,
		},
		{
			name:     "more than twenty differences",
			args:     []string{"--root", f.Root, "--owner", "0:30000"},
			wantCode: 1,
			wantStdout: []string{
				`\A(?:[^\n]*: owner 0:0, want 0:30000\n){20}… and \d+ more\n\z`,
			},
			wantStderr: `does not match the closure: \d+ differences\n$`,
		},
		{
			name:       "timestamp flag",
			args:       []string{"--root", f.Root, "--timestamp", "2"},
			wantCode:   1,
			wantStdout: []string{`(?m)^/: atime 1, ctime 1, mtime 1, crtime 1, want 2$`},
		},
		{
			name:       "registration path flag",
			args:       []string{"--root", f.Root, "--registration-path", "/nix/var/reg"},
			wantCode:   1,
			wantStdout: []string{`(?m)^/nix/var/reg: missing \(want a regular file\)$`, `(?m)^/nix/var: missing \(want a directory\)$`},
		},
		{
			name:       "store dir the graph does not use",
			args:       []string{"--root", f.Root, "--store-dir", "/gnu/store"},
			wantCode:   1,
			wantStderr: `/gnu/store`,
		},
		{name: "bad owner", args: []string{"--owner", "root"}, wantCode: 2, wantStderr: `--owner`},
		{name: "bad timestamp", args: []string{"--timestamp", "99999999999999"}, wantCode: 2, wantStderr: `--timestamp`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			im := img
			if tc.corrupt != "" {
				im = copyVerifyImage(t, img)
				imagechecktest.DebugfsW(t, debugfs, im, tc.corrupt)
			}
			args := append([]string{"verify"}, tc.args...)
			args = append(args, im, f.Graph)
			stdout, stderr, code := runVerifyCLI(t, args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.wantCode, stdout, stderr)
			}
			for _, w := range tc.wantStdout {
				if !regexp.MustCompile(w).MatchString(stdout) {
					t.Errorf("stdout does not match %s:\n%s", w, stdout)
				}
			}
			if tc.wantStderr != "" && !regexp.MustCompile(tc.wantStderr).MatchString(stderr) {
				t.Errorf("stderr does not match %s:\n%s", tc.wantStderr, stderr)
			}
		})
	}
}

func TestVerifyUsage(t *testing.T) {
	for _, args := range [][]string{{"verify"}, {"verify", "only-an-image"}, {"verify", "--no-such-flag", "a", "b"}} {
		_, stderr, code := runVerifyCLI(t, args...)
		if code != 2 || !strings.Contains(stderr, "mkext4fs:") {
			t.Errorf("%q: exit %d, stderr %q; want exit 2 and a message", args, code, stderr)
		}
	}
	stdout, _, code := runVerifyCLI(t, "verify", "--help")
	if code != 0 || !strings.Contains(stdout, "usage: mkext4fs verify") || !strings.Contains(stdout, "-registration-path") {
		t.Errorf("--help: exit %d, stdout %q", code, stdout)
	}
}

// TestVerifyBuiltImages builds images with mkext4fs build and checks that
// verify accepts each with the same flags and names the difference when a
// flag disagrees.
func TestVerifyBuiltImages(t *testing.T) {
	testutil.RequireTool(t, "debugfs")
	testutil.RequireTool(t, "faketime")
	f := imagechecktest.NewFixture(t, imagechecktest.Options{})
	tests := []struct {
		name       string
		build      []string
		verify     []string
		wantCode   int
		wantStdout string
	}{
		{name: "defaults", wantStdout: `matches: 3 store paths`},
		{name: "files", build: []string{"--files", f.Files}, verify: []string{"--files", f.Files}, wantStdout: `matches`},
		{name: "files not given to verify", build: []string{"--files", f.Files}, wantStdout: `matches`},
		{name: "files missing from the image", verify: []string{"--files", f.Files}, wantCode: 1,
			wantStdout: `(?m)^/boot: missing \(the source \S+ has a directory\)$`},
		{name: "owner", build: []string{"--owner", "0:30000"}, verify: []string{"--owner", "0:30000"}, wantStdout: `matches`},
		{name: "owner differs", build: []string{"--owner", "0:30000"}, wantCode: 1,
			wantStdout: `(?m)^` + regexp.QuoteMeta(imagechecktest.TopPath) + `: owner 0:30000, want 0:0$`},
		{name: "timestamp", build: []string{"--timestamp", "315532800"}, verify: []string{"--timestamp", "315532800"}, wantStdout: `matches`},
		{name: "timestamp differs", build: []string{"--timestamp", "315532800"}, wantCode: 1,
			wantStdout: `(?m)^/nix/store: atime 315532800, ctime 315532800, mtime 315532800, crtime 315532800, want 1$`},
		{name: "registration path", build: []string{"--registration-path", "/nix/var/nix/reg"}, verify: []string{"--registration-path", "/nix/var/nix/reg"}, wantStdout: `matches`},
		{name: "optimise", build: []string{"--optimise"}, wantStdout: `matches`},
		{name: "legacy profile", build: []string{"--profile", "legacy"}, wantStdout: `matches`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "image.ext4")
			args := append([]string{"build", "--root", f.Root, "--output", img}, tc.build...)
			_, stderr, code := runVerifyCLI(t, append(args, f.Graph)...)
			if code != 0 {
				t.Fatalf("build: exit %d\n%s", code, stderr)
			}
			args = append([]string{"verify", "--root", f.Root}, tc.verify...)
			stdout, stderr, code := runVerifyCLI(t, append(args, img, f.Graph)...)
			if code != tc.wantCode {
				t.Fatalf("verify: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.wantCode, stdout, stderr)
			}
			if !regexp.MustCompile(tc.wantStdout).MatchString(stdout) {
				t.Errorf("stdout does not match %s:\n%s", tc.wantStdout, stdout)
			}
		})
	}
}
