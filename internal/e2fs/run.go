package e2fs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// WriteConfig writes the mke2fs.conf and e2fsck.conf the tools read
// instead of the host's. features is the mkfs feature list.
func (r *Runner) WriteConfig(features []string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "[defaults]\n")
	fmt.Fprintf(&b, "\tbase_features = %s\n", strings.Join(features, ","))
	b.WriteString("\tdefault_mntopts = acl,user_xattr\n" +
		"\tenable_periodic_fsck = 0\n" +
		"\tblocksize = 4096\n" +
		"\tinode_size = 256\n" +
		"\tinode_ratio = 16384\n" +
		"\tflex_bg_size = 16\n" +
		"\thash_alg = half_md4\n" +
		"\tlazy_itable_init = false\n" +
		"\tlazy_journal_init = true\n" +
		"\n[fs_types]\n")
	// Usage types mke2fs picks by size; defined so that it does not warn.
	for _, t := range []string{"ext4", "floppy", "small", "default", "big", "huge"} {
		fmt.Fprintf(&b, "\t%s = {\n\t\tinode_ratio = 16384\n\t}\n", t)
	}
	if err := os.WriteFile(filepath.Join(r.ConfigDir, "mke2fs.conf"), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write mke2fs.conf: %w", err)
	}
	fsck := "[options]\n\tindexed_dir_slack_percentage = 20\n\tno_optimize_extents = true\n\tbroken_system_clock = true\n"
	if err := os.WriteFile(filepath.Join(r.ConfigDir, "e2fsck.conf"), []byte(fsck), 0o644); err != nil {
		return fmt.Errorf("write e2fsck.conf: %w", err)
	}
	return nil
}

// MkfsOptions are the parameters of a new filesystem.
type MkfsOptions struct {
	Blocks          int64
	Inodes          int64
	BlocksPerGroup  int64 // 0: mke2fs' default
	ReservedPercent float64
	Label, UUID     string
	// Trial skips zeroing the inode tables: for a filesystem made only to
	// read its free counts.
	Trial bool
}

// Mkfs makes an empty filesystem of o.Blocks blocks in image, which must
// exist (it is not truncated).
func (r *Runner) Mkfs(ctx context.Context, image string, o MkfsOptions) error {
	lazy := "0"
	if o.Trial {
		lazy = "1"
	}
	args := []string{"-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256",
		"-N", strconv.FormatInt(o.Inodes, 10),
		"-m", strconv.FormatFloat(o.ReservedPercent, 'f', -1, 64),
		"-L", o.Label, "-U", o.UUID,
		// One -E: before 1.47.4 mke2fs keeps only the last.
		"-E", "hash_seed=" + o.UUID + ",root_owner=0:0,nodiscard,lazy_journal_init=1,lazy_itable_init=" + lazy,
	}
	if o.BlocksPerGroup > 0 {
		args = append(args, "-g", strconv.FormatInt(o.BlocksPerGroup, 10))
	}
	args = append(args, image, strconv.FormatInt(o.Blocks, 10))
	out, _, err := r.run(ctx, r.Tools.Mke2fs, nil, args...)
	if err != nil {
		return err
	}
	if strings.TrimSpace(out) != "" {
		return &ToolError{Argv: append([]string{"mke2fs"}, args...), Err: errors.New("unexpected output"), Output: out}
	}
	return nil
}

// DebugfsError is a command of a script that debugfs reported as failed.
type DebugfsError struct {
	// Line is the 1-based line of the script, Command its text.
	Line    int
	Command string
	// Message is what debugfs printed about it.
	Message string
	// More counts further messages.
	More int
}

func (e *DebugfsError) Error() string {
	msg := fmt.Sprintf("debugfs: script line %d %q: %s", e.Line, e.Command, e.Message)
	if e.More > 0 {
		msg += fmt.Sprintf(" (and %d more messages)", e.More)
	}
	return msg
}

var (
	allocatedRE = regexp.MustCompile(`^Allocated inode: \d+$`)
	bannerRE    = regexp.MustCompile(`^debugfs \d+\.\d+`)
)

// Debugfs feeds the script lines to debugfs -w on image and checks every
// line it prints. progress, if set, is called with the number of commands
// done from time to time.
func (r *Runner) Debugfs(ctx context.Context, image string, lines []string, progress func(done int)) error {
	return r.RunDebugfs(ctx, image, &DebugfsScript{Lines: lines, Progress: progress})
}

// DebugfsScript is a script for RunDebugfs, with what to do with the
// results debugfs reports.
type DebugfsScript struct {
	// Pre and Lines are the command lines, Pre's first (a short
	// prefix, so that a long script need not be copied to add it). The
	// line numbers given to the functions below count both.
	Pre, Lines []string
	// File, if set, holds the lines that follow Pre instead of Lines:
	// FileLines of them, each ending in a newline.
	File      string
	FileLines int
	// Progress, if set, is called with the number of commands done from
	// time to time.
	Progress func(done int)
	// Inode, if set, receives the inode number each write command (on
	// line i, 0-based) reports.
	Inode func(i int, ino uint64)
	// Extents, if set, receives the leaf extents each "ex -l" command
	// lists, once they are complete.
	Extents func(i int, extents []Extent)
}

// Len is the number of lines of s.
func (s *DebugfsScript) Len() int {
	if s.File != "" {
		return len(s.Pre) + s.FileLines
	}
	return len(s.Pre) + len(s.Lines)
}

var (
	extentHeaderRE = regexp.MustCompile(`^Level Entries +Logical +Physical Length Flags$`)
	// A leaf extent: level/depth, entry/entries, logical range, physical
	// range, length, flags.
	extentLeafRE = regexp.MustCompile(`^ *(\d+)/ *(\d+) +(\d+)/ *(\d+) +(\d+) - +(\d+) +(\d+) - +(\d+) +(\d+) (Uninit)? *$`)
	// What goto_block and replace_node print in debugfs' extent mode.
	extentNodeRE = regexp.MustCompile(`^extent: lblk \d+--\d+, len \d+, pblk \d+, flags: LEAF (UNINIT )?$`)
)

// Extent maps Len blocks of a file from block Logical on to the image's
// blocks from Physical on.
type Extent struct {
	Logical, Physical, Len uint64
	// Uninit marks an uninitialised extent, which reads as zeros.
	Uninit bool
	// Depth is the depth of the file's extent tree (0: the extents are
	// in the inode); Entry is the extent's 0-based place in its node.
	Depth, Entry int
}

// parseLeafExtent reads one line of "ex -l" output.
func parseLeafExtent(line string) (Extent, bool) {
	m := extentLeafRE.FindStringSubmatch(line)
	if m == nil || m[1] != m[2] {
		return Extent{}, false
	}
	var v [9]uint64
	for i := range v {
		x, err := strconv.ParseUint(m[i+1], 10, 64)
		if err != nil {
			return Extent{}, false
		}
		v[i] = x
	}
	e := Extent{Logical: v[4], Physical: v[6], Len: v[8], Uninit: m[10] != "", Depth: int(v[1]), Entry: int(v[2]) - 1}
	if e.Len == 0 || v[5] != e.Logical+e.Len-1 || v[7] != e.Physical+e.Len-1 || v[2] == 0 || v[2] > v[3] {
		return Extent{}, false
	}
	return e, true
}

// RunDebugfs runs the script with debugfs -w on image and checks every
// line debugfs prints.
func (r *Runner) RunDebugfs(ctx context.Context, image string, s *DebugfsScript) error {
	progress := s.Progress
	src, err := openScript(s)
	if err != nil {
		return err
	}
	defer src.close()
	total, line := src.total, src.line
	cmd := r.command(ctx, r.Tools.Debugfs, "-w", "-f", "-", image)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	// stdout and stderr on one pipe: debugfs writes both unbuffered, so
	// an error message follows the echo of the command that caused it.
	pr, pw, err := outputPipe()
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := start(cmd); err != nil {
		pr.Close()
		pw.Close()
		return &ToolError{Argv: []string{"debugfs", "-w", "-f", "-", image}, Err: err}
	}
	pw.Close()

	writeErr := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(stdin, 256*1024)
		err := src.writeTo(w)
		if err == nil {
			err = w.Flush()
		}
		if cerr := stdin.Close(); err == nil {
			err = cerr
		}
		writeErr <- err
	}()

	var (
		next     int // index of the next command to be echoed
		firstErr *DebugfsError
		other    []string
	)
	report := func(msg string) {
		if firstErr != nil {
			firstErr.More++
			return
		}
		if next == 0 {
			other = append(other, msg)
			return
		}
		firstErr = &DebugfsError{Line: next, Command: line(next - 1), Message: msg}
	}
	// The extents of the "ex -l" command being read.
	var (
		extents   []Extent
		inExtents bool
	)
	endExtents := func() {
		if inExtents && s.Extents != nil {
			s.Extents(next-1, extents)
		}
		extents, inExtents = nil, false
	}
	scanErr := scanLines(pr, func(out string) error {
		prev := ""
		if next > 0 {
			prev = line(next - 1)
		}
		switch {
		case next < total && strings.HasPrefix(out, "debugfs: ") && out[len("debugfs: "):] == line(next):
			endExtents()
			next++
			if r.Verbose != nil {
				fmt.Fprintln(r.Verbose, line(next-1))
			}
			if progress != nil && next%4096 == 0 {
				progress(next)
			}
		case next == 0 && bannerRE.MatchString(out):
		case next > 0 && allocatedRE.MatchString(out) && strings.HasPrefix(prev, "write "):
			if s.Inode != nil {
				ino, _ := strconv.ParseUint(strings.TrimPrefix(out, "Allocated inode: "), 10, 64)
				s.Inode(next-1, ino)
			}
		case strings.HasPrefix(prev, "ex -l ") && !inExtents && extents == nil && extentHeaderRE.MatchString(out):
			inExtents = true
		case strings.HasPrefix(prev, "ex -l ") && inExtents && extentLeafRE.MatchString(out):
			e, ok := parseLeafExtent(out)
			if !ok {
				report(out)
				break
			}
			extents = append(extents, e)
		case strings.HasPrefix(prev, "goto_block ") && extentNodeRE.MatchString(out):
		case (strings.HasPrefix(prev, "replace_node ") || strings.HasPrefix(prev, "insert_node ")) &&
			extentNodeRE.MatchString(out) && !strings.Contains(out, "UNINIT"):
		case out == "" && (strings.HasPrefix(prev, "rmdir ") || strings.HasPrefix(prev, "rm ") || strings.HasPrefix(prev, "kill_file ")):
			// kill_file_by_inode ends its (empty) report with a newline.
		default:
			report(out)
		}
		return nil
	})
	if firstErr == nil {
		endExtents()
	}
	pr.Close()
	werr := <-writeErr
	waitErr := cmd.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	argv := []string{"debugfs", "-w", "-f", "-", image}
	if firstErr != nil {
		return firstErr
	}
	if len(other) > 0 {
		return &ToolError{Argv: argv, Err: errors.New("failed"), Output: strings.Join(other, "\n")}
	}
	if waitErr != nil {
		return &ToolError{Argv: argv, Err: fmt.Errorf("%w after %d of %d commands", exitReason(waitErr), next, total)}
	}
	if scanErr != nil {
		return fmt.Errorf("reading debugfs output: %w", scanErr)
	}
	if src.err != nil {
		return fmt.Errorf("read the script: %w", src.err)
	}
	if next != total {
		return &ToolError{Argv: argv, Err: fmt.Errorf("ran %d of %d commands (write: %v)", next, total, werr)}
	}
	if progress != nil {
		progress(next)
	}
	return nil
}

// e2fsckQuiet are the lines e2fsck prints on a clean run.
var e2fsckQuiet = regexp.MustCompile(`^(e2fsck \d.*|Pass [1-5][A-E]?: .*|\s*|(.*: )?\*+ FILE SYSTEM WAS MODIFIED \*+|.*: \d+/\d+ files \(.*\), \d+/\d+ blocks)$`)

// fullInodeCounts is the first e2fsck with -E inode_count_fullmap.
var fullInodeCounts = Version{1, 43, 6}

// e2fsckArgs adds the options every e2fsck run takes to args, before the
// last (the image). With inode_count_fullmap, e2fsck counts the links to
// each inode in an array of two bytes per inode instead of a sorted list
// it searches, and inserts into, for every directory entry: on the bench
// closure (110,000 inodes) e2fsck -fn took 0.175 s instead of 0.208 s and
// e2fsck -fyD 0.315 s instead of 0.333 s, for 2 MiB of memory per million
// inodes. The counts, and so the image, are the same.
func (r *Runner) e2fsckArgs(args ...string) []string {
	if r.Version.Less(fullInodeCounts) {
		return args
	}
	last := len(args) - 1
	return append(append(args[:last:last], "-E", "inode_count_fullmap"), args[last])
}

// Optimize runs e2fsck -fyD: it indexes and packs every directory. Any
// repair it reports is an error: the image should need none.
func (r *Runner) Optimize(ctx context.Context, image string) error {
	out, _, err := r.run(ctx, r.Tools.E2fsck, []int{0, 1}, r.e2fsckArgs("-f", "-y", "-D", image)...)
	if err != nil {
		return err
	}
	return checkQuiet("e2fsck -fyD "+image, out)
}

// Check runs e2fsck -fn, which must find nothing.
func (r *Runner) Check(ctx context.Context, image string) error {
	out, _, err := r.run(ctx, r.Tools.E2fsck, []int{0}, r.e2fsckArgs("-f", "-n", image)...)
	if err != nil {
		return err
	}
	return checkQuiet("e2fsck -fn "+image, out)
}

func checkQuiet(what, out string) error {
	var bad []string
	_ = scanLines(strings.NewReader(out), func(line string) error {
		if !e2fsckQuiet.MatchString(line) {
			bad = append(bad, line)
		}
		return nil
	})
	if len(bad) > 0 {
		return fmt.Errorf("%s reported problems: %s", what, strings.Join(bad, " | "))
	}
	return nil
}

// tune2fsRehash is what tune2fs prints when a directory block has no room
// for its checksum tail: the e2fsck -fD the build runs next adds it.
var tune2fsRehash = []string{
	"This operation requires a freshly checked filesystem.",
	"Please run e2fsck -fD on the filesystem.",
}

// EnableFeatures turns features on with tune2fs -O. The caller must run
// e2fsck -fyD next.
func (r *Runner) EnableFeatures(ctx context.Context, image string, features []string) error {
	args := []string{"-O", strings.Join(features, ","), image}
	out, _, err := r.run(ctx, r.Tools.Tune2fs, nil, args...)
	if err != nil {
		return err
	}
	var lines []string
	_ = scanLines(strings.NewReader(out), func(line string) error {
		if strings.TrimSpace(line) != "" && !strings.HasPrefix(line, "tune2fs ") {
			lines = append(lines, line)
		}
		return nil
	})
	if len(lines) > 0 && strings.Join(lines, "\n") != strings.Join(tune2fsRehash, "\n") {
		return &ToolError{Argv: append([]string{"tune2fs"}, args...), Err: errors.New("unexpected output"), Output: strings.Join(lines, "\n")}
	}
	return nil
}

var minSizeRE = regexp.MustCompile(`(?m)^Estimated minimum size of the filesystem: (\d+)$`)

// MinSize asks resize2fs -P for the smallest size it would shrink to.
func (r *Runner) MinSize(ctx context.Context, image string) (int64, error) {
	out, _, err := r.run(ctx, r.Tools.Resize2fs, nil, "-P", image)
	if err != nil {
		return 0, err
	}
	m := minSizeRE.FindStringSubmatch(out)
	if m == nil {
		return 0, &ToolError{Argv: []string{"resize2fs", "-P", image}, Err: errors.New("no minimum size in its output"), Output: out}
	}
	return strconv.ParseInt(m[1], 10, 64)
}

// Shrink resizes the filesystem to blocks blocks with resize2fs.
func (r *Runner) Shrink(ctx context.Context, image string, blocks int64) error {
	args := []string{image, strconv.FormatInt(blocks, 10)}
	out, _, err := r.run(ctx, r.Tools.Resize2fs, nil, args...)
	if err != nil {
		return err
	}
	var bad []string
	_ = scanLines(strings.NewReader(out), func(line string) error {
		switch {
		case strings.TrimSpace(line) == "", strings.HasPrefix(line, "resize2fs "),
			strings.HasPrefix(line, "Resizing the filesystem on "),
			strings.HasPrefix(line, "The filesystem on ") && strings.Contains(line, " blocks long."):
		default:
			bad = append(bad, line)
		}
		return nil
	})
	if len(bad) > 0 {
		return &ToolError{Argv: append([]string{"resize2fs"}, args...), Err: errors.New("unexpected output"), Output: strings.Join(bad, "\n")}
	}
	return nil
}
