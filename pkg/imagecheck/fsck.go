package imagecheck

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
)

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
