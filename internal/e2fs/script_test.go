package e2fs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeScriptFile writes lines, each ending in a newline, to a new file.
func writeScriptFile(t *testing.T, lines []string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDebugfsScriptFile: a script whose lines after Pre are in a file
// runs like the same lines held in memory: every command is checked, the
// inode numbers come with the same line numbers, and a failure names the
// command and its line. A file with fewer or more lines than it is said
// to hold is an error.
func TestDebugfsScriptFile(t *testing.T) {
	r := newRunner(t)
	host := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(host, []byte("content"), 0o444); err != nil {
		t.Fatal(err)
	}
	pre := []string{"mkdir p", "cd p"}
	lines := []string{"mkdir a", "cd a", "lcd " + filepath.Dir(host), "write f f", "write f g", "symlink l target", "cd /", "write f h"}
	run := func(s *DebugfsScript) (map[int]uint64, error) {
		inodes := map[int]uint64{}
		s.Inode = func(i int, ino uint64) { inodes[i] = ino }
		return inodes, r.RunDebugfs(context.Background(), newImage(t, r), s)
	}
	want, err := run(&DebugfsScript{Pre: pre, Lines: lines})
	if err != nil {
		t.Fatalf("in memory: %v", err)
	}
	if len(want) != 3 {
		t.Fatalf("in memory: inodes %v, want 3", want)
	}
	got, err := run(&DebugfsScript{Pre: pre, File: writeScriptFile(t, lines), FileLines: len(lines)})
	if err != nil {
		t.Fatalf("from a file: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("from a file: inodes %v, want %v", got, want)
	}
	for i, ino := range want {
		if got[i] != ino {
			t.Errorf("from a file: inodes %v, want %v", got, want)
			break
		}
	}

	bad := append(append([]string{}, lines[:4]...), "cd missing", "mkdir b")
	_, err = run(&DebugfsScript{Pre: pre, File: writeScriptFile(t, bad), FileLines: len(bad)})
	var de *DebugfsError
	if !errors.As(err, &de) || de.Line != len(pre)+5 || de.Command != "cd missing" {
		t.Errorf("a failing command in the file: %v, want a DebugfsError on line %d, cd missing", err, len(pre)+5)
	}

	for _, count := range []int{len(lines) + 1, len(lines) - 1} {
		if _, err := run(&DebugfsScript{Pre: pre, File: writeScriptFile(t, lines), FileLines: count}); err == nil {
			t.Errorf("a file of %d lines said to hold %d: no error", len(lines), count)
		}
	}
}
