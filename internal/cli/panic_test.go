package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPanicBecomesReport: a bug that panics inside a subcommand ends in
// exit 1 and one line that asks for a report, never in a stack trace.
func TestPanicBecomesReport(t *testing.T) {
	var nilMap map[string]int
	for name, fn := range map[string]func(){
		"string":        func() { panic("boom") },
		"error value":   func() { panic(errors.New("boom")) },
		"nil map write": func() { nilMap["boom"] = 1 },
		"index":         func() { _ = []int{}[len(os.Args)+1] },
	} {
		t.Run(name, func(t *testing.T) {
			const cmd = "test-panic"
			register(cmd, "panics (tests only)", func(context.Context, *Env, []string) error {
				fn()
				return nil
			})
			defer delete(commands, cmd)
			var stdout, stderr bytes.Buffer
			err := Run(context.Background(), Env{Args: []string{cmd}, Stdout: &stdout, Stderr: &stderr})
			code := ExitCode(err, &stderr)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "mkext4fs: internal error (please report it at https://") {
				t.Errorf("stderr is not one line asking for a report: %q", stderr.String())
			}
			if name != "nil map write" && name != "index" && !strings.Contains(lines[0], "boom") {
				t.Errorf("the panic value is not in the report: %q", lines[0])
			}
		})
	}
}

// FuzzRun runs the subcommands that need no e2fsprogs on fuzzed command
// lines and a fuzzed graph file: whatever the input, the result is
// success, a usage error or an ordinary error, never the report of an
// internal error.
func FuzzRun(f *testing.F) {
	f.Add("paths\x00GRAPH", cliA+"\n\n1\n"+cliA+"\n")
	f.Add("registration\x00--no-verify-hashes\x00GRAPH", `{"k": [{"path": "`+cliA+`", "narHash": "sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73", "narSize": 1, "references": []}]}`)
	f.Add("script\x00--root\x00ROOT\x00GRAPH", cliA+"\n\n0\n")
	f.Add("script\x00--headroom\x001e9GiB\x00--owner\x00x:y\x00--features\x00^,,+\x00GRAPH", "")
	f.Add("build\x00--output\x00ROOT/img\x00GRAPH", cliA+"\n\n0\n")
	f.Add("verify\x00ROOT/img\x00GRAPH", cliA+"\n\n0\n")
	f.Add("--version", "")
	f.Add("nonsense\x00-x", "")
	f.Fuzz(func(t *testing.T, argline, graph string) {
		dir := t.TempDir()
		graphFile := filepath.Join(dir, "graph")
		if err := os.WriteFile(graphFile, []byte(graph), 0o644); err != nil {
			t.Fatal(err)
		}
		args := strings.Split(argline, "\x00")
		for i, a := range args {
			a = strings.ReplaceAll(a, "GRAPH", graphFile)
			args[i] = strings.ReplaceAll(a, "ROOT", dir)
		}
		// build and verify run e2fsprogs: give them tools that do not
		// exist, so that they stop right after checking their flags.
		missing := filepath.Join(dir, "missing-tool")
		switch args[0] {
		case "build":
			args = append(args, "--mke2fs", missing, "--debugfs", missing)
		case "verify":
			args = append(args, "--debugfs", missing, "--e2fsck", missing)
		}
		var stdout, stderr bytes.Buffer
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		err := Run(ctx, Env{Args: args, Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr})
		if err != nil && strings.Contains(err.Error(), "internal error") {
			t.Fatalf("%q: %v", args, err)
		}
		var msg bytes.Buffer
		ExitCode(err, &msg)
		if strings.Count(msg.String(), "\n") > 1 {
			t.Fatalf("%q: the error spans several lines: %q", args, msg.String())
		}
	})
}
