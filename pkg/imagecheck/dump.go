package imagecheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// Dump copies the whole tree of the image into dir, which must exist and be
// empty, with debugfs' rdump: names, file contents, symlink targets and
// permission bits as in the image. Ownership and times are kept only as far
// as the caller may set them, so compare those with Read, not on the copy.
//
// rdump reports what it could not do (chown as an unprivileged user, for
// one) without failing; those messages come back as the second result, for
// the caller to show when the copy turns out to differ.
func Dump(ctx context.Context, image, dir string, tools Tools) (string, error) {
	debugfs, err := tools.debugfs()
	if err != nil {
		return "", err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("dump directory %s: %w", dir, err)
	}
	// debugfs splits its arguments at blanks and reads '"' as quoting: run
	// it in the parent and name the target by a plain base name.
	parent, base := filepath.Split(abs)
	if strings.ContainsAny(base, " \t\"<>") || base == "" {
		return "", fmt.Errorf("dump directory %s: its base name must be plain (no blanks, quotes, < or >)", dir)
	}
	cmd := exec.CommandContext(ctx, debugfs, "-R", "rdump / "+base, image)
	cmd.Dir = parent
	cmd.Env = toolEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	msgs := strings.TrimSpace(strings.TrimPrefix(stderr.String(), bannerOf(stderr.String())))
	if err != nil {
		return msgs, fmt.Errorf("%s -R \"rdump / %s\" %s: %w: %s", debugfs, base, image, err, firstLines(msgs, 5))
	}
	return msgs, nil
}

// bannerOf returns the version line debugfs prints first, if it is there.
func bannerOf(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	if isBanner(line) {
		return line
	}
	return ""
}

// MakeRemovable gives the owner write and search permission on every
// directory under dir (rdump leaves store directories at 0555), so that
// os.RemoveAll can delete the copy without root.
func MakeRemovable(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrPermission) && d != nil && d.IsDir() {
				if cerr := os.Chmod(p, 0o700); cerr != nil {
					return cerr
				}
				return nil
			}
			return err
		}
		if d.IsDir() {
			return os.Chmod(p, 0o700)
		}
		return nil
	})
}

// Fsck runs e2fsck -fn on the image. It returns nil when the filesystem is
// clean, else an error carrying e2fsck's exit status and report.
func Fsck(ctx context.Context, image string, tools Tools) error {
	e2fsck, err := tools.e2fsck()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, e2fsck, "-fn", image)
	cmd.Env = toolEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s -fn %s: %w: %s", e2fsck, image, err, fsckFindings(string(out)))
	}
	return nil
}

// fsckSummary is e2fsck's closing line, "LABEL: 345/1024 files (0.6% non-contiguous), 1438/4096 blocks".
var fsckSummary = regexp.MustCompile(`: \d+/\d+ files \(.*\), \d+/\d+ blocks$`)

// fsckFindings condenses e2fsck's report to its findings on one line: the
// banner, the pass headings and the summary are left out.
func fsckFindings(out string) string {
	var keep []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "", strings.HasPrefix(line, "e2fsck 1."), strings.HasPrefix(line, "Pass "),
			strings.Contains(line, "WARNING: Filesystem still has errors"),
			fsckSummary.MatchString(line):
			continue
		}
		keep = append(keep, line)
	}
	const max = 6
	if len(keep) > max {
		keep = append(keep[:max], fmt.Sprintf("… (%d more lines)", len(keep)-max))
	}
	return strings.Join(keep, "; ")
}
