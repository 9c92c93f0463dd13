package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runClosureCLI runs one invocation in-process and returns what it printed
// and its exit status.
func runClosureCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := Run(context.Background(), Env{Args: args, Stdout: &out, Stderr: &errOut, Version: "test"})
	code = ExitCode(err, &errOut)
	return out.String(), errOut.String(), code
}

// Store paths with valid hash parts for hand-written graphs.
var (
	cliA = "/nix/store/" + strings.Repeat("a", 32) + "-a"
	cliB = "/nix/store/" + strings.Repeat("b", 32) + "-b"
)

func writeCLIFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPaths(t *testing.T) {
	g1 := writeCLIFile(t, "g1", cliB+"\n\n0\n")
	g2 := writeCLIFile(t, "g2", cliA+"\n\n1\n"+cliB+"\n"+cliB+"\n\n0\n")
	json := writeCLIFile(t, "attrs.json", `{"name": "x", "k": [{"path": "`+cliB+`", "references": []}]}`)
	gnu := "/gnu/store/" + strings.Repeat("a", 32) + "-a"
	gnuGraph := writeCLIFile(t, "gnu", gnu+"\n\n0\n")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"one graph", []string{"paths", g1}, cliB + "\n"},
		{"union, sorted", []string{"paths", g1, g2}, cliA + "\n" + cliB + "\n"},
		{"flags after the graph", []string{"paths", gnuGraph, "--store-dir", "/gnu/store"}, gnu + "\n"},
		{"json with attrs key", []string{"paths", "--attrs-key", "k", json}, cliB + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runClosureCLI(t, tt.args...)
			if code != 0 || out != tt.want || errOut != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want 0, %q, nothing", code, out, errOut, tt.want)
			}
		})
	}
}

// Failures exit 1 with one line on stderr naming the file and line or the
// store path; usage errors exit 2.
func TestPathsAndRegistrationErrors(t *testing.T) {
	open := writeCLIFile(t, "open", cliA+"\n\n1\n"+cliB+"\n")
	empty := writeCLIFile(t, "empty", "")
	good := writeCLIFile(t, "good", cliA+"\n\n0\n")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no graph", []string{"paths"}, 2, "mkext4fs: paths: no graph files given\n"},
		{"no graph for registration", []string{"registration", "--root", "/"}, 2, "mkext4fs: registration: no graph files given\n"},
		{"unknown flag", []string{"paths", "--frobnicate", good}, 2, "mkext4fs: paths: flag provided but not defined: -frobnicate\n"},
		{"relative store dir", []string{"registration", "--store-dir", "store", good}, 2, "mkext4fs: registration: --store-dir: store directory \"store\" must be an absolute, clean path other than /\n"},
		{"graph not closed", []string{"paths", open}, 1, "mkext4fs: " + open + ":1: " + cliA + " references " + cliB + ", which is not in the closure\n"},
		{"empty graph", []string{"registration", empty}, 1, "mkext4fs: " + empty + ": no store paths: is this an exportReferencesGraph file?\n"},
		{"missing graph", []string{"paths", empty + "-nope"}, 1, "mkext4fs: reading graph: open " + empty + "-nope: no such file or directory\n"},
		{"store path missing on disk", []string{"registration", "--root", t.TempDir(), good}, 1, ": no such file or directory\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runClosureCLI(t, tt.args...)
			if code != tt.code || !strings.HasSuffix(errOut, tt.want) || strings.Count(errOut, "\n") != 1 || out != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, no stdout, one line ending in %q", code, out, errOut, tt.code, tt.want)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, cmd := range []string{"paths", "registration"} {
		out, _, code := runClosureCLI(t, cmd, "--help")
		if code != 0 || !strings.HasPrefix(out, "usage: mkext4fs "+cmd+" [flags] GRAPH...") || !strings.Contains(out, "-store-dir") {
			t.Errorf("%s --help: exit %d\n%s", cmd, code, out)
		}
	}
}
