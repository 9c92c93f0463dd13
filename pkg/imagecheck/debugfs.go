package imagecheck

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/mkext4fs/mkext4fs/internal/e2fs"
)

// Tools names the e2fsprogs programs the checks run. An empty field is looked
// up on PATH, then in /usr/sbin and /sbin, where Debian keeps e2fsprogs.
type Tools struct {
	Debugfs string
	E2fsck  string
}

func (t Tools) debugfs() (string, error) { return lookTool(t.Debugfs, "debugfs") }
func (t Tools) e2fsck() (string, error)  { return lookTool(t.E2fsck, "e2fsck") }

func lookTool(given, name string) (string, error) {
	if given != "" {
		return given, nil
	}
	p, err := e2fs.LookTool(name)
	if err != nil {
		return "", fmt.Errorf("%s not found on PATH, in /usr/sbin or in /sbin (Debian: apt-get install e2fsprogs)", name)
	}
	return p, nil
}

// toolEnv is the environment of every tool run: dates in UTC and in the C
// locale, no pager.
func toolEnv() []string {
	env := os.Environ()
	return append(env, "TZ=UTC", "LC_ALL=C", "DEBUGFS_PAGER=__none__", "PAGER=__none__")
}

// result is what debugfs printed for one command of a script.
type result struct {
	cmd string
	out []byte // everything after the echo of the command, stdout and stderr
}

// runScript runs the commands in one read-only debugfs process and returns,
// per command, what it printed.
//
// debugfs -f echoes each command as "debugfs: CMD" and prints its output and
// its error messages (unbuffered, so in order) without any delimiter an image
// could not forge: a file name or symlink target may contain "\ndebugfs: ".
// So every command is preceded by a comment line carrying a random nonce,
// which debugfs echoes verbatim; the output is cut at those lines only.
func runScript(ctx context.Context, debugfs, image string, cmds []string) ([]result, error) {
	var nb [16]byte
	if _, err := rand.Read(nb[:]); err != nil {
		return nil, fmt.Errorf("making a nonce: %w", err)
	}
	marker := "# mkext4fs-" + hex.EncodeToString(nb[:]) + " "
	var script bytes.Buffer
	for i, c := range cmds {
		if strings.ContainsAny(c, "\n\r") || strings.HasPrefix(strings.TrimLeft(c, " \t"), "#") {
			return nil, fmt.Errorf("debugfs command %q cannot be sent on one line", c)
		}
		fmt.Fprintf(&script, "%s%d\n%s\n", marker, i, c)
	}

	cmd := exec.CommandContext(ctx, debugfs, "-f", "-", image)
	cmd.Env = toolEnv()
	cmd.Stdin = &script
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("running %s: %w", debugfs, err)
	}
	// The same pipe for both streams keeps error messages next to the
	// command that caused them.
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("running %s: %w", debugfs, err)
	}
	pw.Close()
	results, perr := splitOutput(bufio.NewReaderSize(pr, 1<<16), marker, cmds)
	if perr != nil {
		// Drain so that debugfs does not block on a full pipe.
		_, _ = io.Copy(io.Discard, pr)
	}
	pr.Close()
	werr := cmd.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if perr != nil {
		return nil, fmt.Errorf("%s -f - %s: %w", debugfs, image, perr)
	}
	if werr != nil {
		return nil, fmt.Errorf("%s -f - %s: %w", debugfs, image, werr)
	}
	return results, nil
}

// splitOutput cuts debugfs' output at the marker lines. Before the first
// marker only the version banner may appear: anything else (a message that
// the image could not be opened) is an error.
func splitOutput(r *bufio.Reader, marker string, cmds []string) ([]result, error) {
	results := make([]result, 0, len(cmds))
	var pre bytes.Buffer
	cur := -1
	var out bytes.Buffer
	finish := func() error {
		if cur < 0 {
			return nil
		}
		echo := "debugfs: " + cmds[cur] + "\n"
		b := out.Bytes()
		if !bytes.HasPrefix(b, []byte(echo)) {
			return fmt.Errorf("output of %q does not start with its echo: %q", cmds[cur], clip(b, 200))
		}
		results = append(results, result{cmd: cmds[cur], out: bytes.Clone(b[len(echo):])})
		out.Reset()
		return nil
	}
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			if bytes.HasPrefix(line, []byte(marker)) {
				n, perr := strconv.Atoi(strings.TrimSuffix(string(line[len(marker):]), "\n"))
				if perr != nil || n != cur+1 || n >= len(cmds) {
					return nil, fmt.Errorf("unexpected marker line %q", line)
				}
				if err := finish(); err != nil {
					return nil, err
				}
				cur = n
			} else if cur < 0 {
				pre.Write(line)
			} else {
				out.Write(line)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if err := finish(); err != nil {
		return nil, err
	}
	if msg := strings.TrimSpace(pre.String()); msg != "" && !isBanner(msg) {
		return nil, fmt.Errorf("%s", firstLines(msg, 5))
	}
	if len(results) != len(cmds) {
		return nil, fmt.Errorf("debugfs stopped after %d of %d commands", len(results), len(cmds))
	}
	return results, nil
}

// isBanner reports whether s is debugfs' version line, "debugfs 1.47.0 (5-Feb-2023)".
func isBanner(s string) bool {
	return strings.HasPrefix(s, "debugfs ") && !strings.Contains(s, "\n") && strings.HasSuffix(s, ")")
}

func clip(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

func firstLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) <= n {
		return strings.TrimRight(s, "\n")
	}
	return strings.TrimRight(strings.Join(lines[:n], ""), "\n") + fmt.Sprintf(" … (%d more lines)", len(lines)-n)
}
