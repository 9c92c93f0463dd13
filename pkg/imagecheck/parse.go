package imagecheck

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// dirent is one line of debugfs' "ls -p": /INO/MODE/UID/GID/NAME/SIZE/ for
// files and /INO/MODE/UID/GID/NAME// for directories.
type dirent struct {
	Ino      uint32
	Mode     uint32
	UID, GID uint32
	Name     string
	Size     uint64 // 0 for directories, which ls -p prints without a size
}

// parseLsP parses the output of "ls -p". The name is printed raw (e2fsprogs
// 1.47.0, debugfs/ls.c: "%.*s"), so it may hold any byte but '/' and NUL,
// newlines included: the fields are read as a stream cut at '/', never as
// lines. The listing ends with one empty line. Empty slots, inode 0, are
// returned too.
func parseLsP(out []byte) ([]dirent, error) {
	var ents []dirent
	rest := out
	for {
		if len(rest) == 0 {
			return nil, fmt.Errorf("listing does not end with an empty line")
		}
		if rest[0] == '\n' {
			if len(rest) != 1 {
				return nil, fmt.Errorf("unexpected text after the listing: %q", clip(rest, 200))
			}
			return ents, nil
		}
		if rest[0] != '/' {
			return nil, fmt.Errorf("unexpected text in the listing: %q", firstLines(string(clip(rest, 400)), 3))
		}
		var fields [5][]byte
		p := rest[1:]
		for i := range fields {
			j := bytes.IndexByte(p, '/')
			if j < 0 {
				return nil, fmt.Errorf("truncated listing entry %q", clip(rest, 200))
			}
			fields[i], p = p[:j], p[j+1:]
		}
		var e dirent
		var err error
		if e.Ino, err = parseUint32(fields[0], 10); err != nil {
			return nil, fmt.Errorf("listing entry %q: inode: %w", clip(rest, 200), err)
		}
		if e.Mode, err = parseUint32(fields[1], 8); err != nil {
			return nil, fmt.Errorf("listing entry %q: mode: %w", clip(rest, 200), err)
		}
		if e.UID, err = parseUint32(fields[2], 10); err != nil {
			return nil, fmt.Errorf("listing entry %q: uid: %w", clip(rest, 200), err)
		}
		if e.GID, err = parseUint32(fields[3], 10); err != nil {
			return nil, fmt.Errorf("listing entry %q: gid: %w", clip(rest, 200), err)
		}
		e.Name = string(fields[4])
		// Empty slots (inode 0, as in lost+found's preallocated blocks)
		// have no name.
		if e.Name == "" && e.Ino != 0 {
			return nil, fmt.Errorf("listing entry %q: empty name", clip(rest, 200))
		}
		if e.Mode&modeTypeMask == modeDir {
			if !bytes.HasPrefix(p, []byte("/\n")) {
				return nil, fmt.Errorf("listing entry %q: directory without the empty size field", clip(rest, 200))
			}
			p = p[2:]
		} else {
			j := bytes.Index(p, []byte("/\n"))
			if j < 0 {
				return nil, fmt.Errorf("truncated listing entry %q", clip(rest, 200))
			}
			if e.Size, err = strconv.ParseUint(string(p[:j]), 10, 64); err != nil {
				return nil, fmt.Errorf("listing entry %q: size: %w", clip(rest, 200), err)
			}
			p = p[j+2:]
		}
		ents = append(ents, e)
		rest = p
	}
}

func parseUint32(b []byte, base int) (uint32, error) {
	if len(b) == 0 || b[0] == '+' || b[0] == '-' {
		return 0, fmt.Errorf("not a number: %q", b)
	}
	n, err := strconv.ParseUint(string(b), base, 32)
	if err != nil {
		return 0, fmt.Errorf("not a number: %q", b)
	}
	return uint32(n), nil
}

// statInfo is what the tree check needs from debugfs' "stat <INO>".
type statInfo struct {
	Ino       uint32
	Perm      uint32 // mode & 07777
	Type      string // "regular", "directory", "symlink", …
	Flags     uint32
	UID, GID  uint32
	Size      uint64
	Links     uint32
	Ctime     Timestamp
	Atime     Timestamp
	Mtime     Timestamp
	Crtime    Timestamp
	HasCrtime bool // only inodes larger than 128 bytes have a creation time
	// Target is a fast symlink's target (under 60 bytes, kept in the
	// inode), which stat prints last.
	Target    string
	HasTarget bool
}

// fastLinkPrefix starts the last line of stat for a fast symlink: the
// target follows raw, then a '"' and a newline.
const fastLinkPrefix = "\nFast link dest: \""

// fastSymlinkMax is the size under which debugfs (ext2fs_is_fast_symlink
// in e2fsprogs 1.47.0) takes a symlink's target from the inode itself.
const fastSymlinkMax = 60

// parseStat parses the fixed head of debugfs' "stat" output (e2fsprogs
// 1.47.0, debugfs/debugfs.c internal_dump_inode): the lines up to the
// times. What follows (extended attributes, a fast symlink's target) may
// hold arbitrary bytes and is not read; neither is anything after the first
// line that starts with a key seen before.
func parseStat(out []byte) (statInfo, error) {
	var s statInfo
	lines := strings.Split(string(out), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "Inode: ") {
		return s, fmt.Errorf("%s", firstLines(string(clip(out, 400)), 3))
	}
	seen := map[string]bool{}
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) == 0 {
			break
		}
		key := f[0]
		if seen[key] {
			break
		}
		seen[key] = true
		var err error
		switch key {
		case "Inode:":
			err = parseInodeLine(line, &s)
		case "User:":
			err = parseUserLine(f, &s)
		case "Links:":
			if len(f) < 2 {
				err = fmt.Errorf("short line")
				break
			}
			s.Links, err = parseUint32([]byte(f[1]), 10)
		case "ctime:":
			s.Ctime, err = parseTime(f)
		case "atime:":
			s.Atime, err = parseTime(f)
		case "mtime:":
			s.Mtime, err = parseTime(f)
		case "crtime:":
			s.Crtime, err = parseTime(f)
			s.HasCrtime = true
		}
		if err != nil {
			return s, fmt.Errorf("stat line %q: %w", line, err)
		}
		// The times are the last lines this parser trusts: crtime on large
		// inodes, mtime on 128-byte ones (whose times have no extra field).
		if key == "crtime:" || (key == "mtime:" && !strings.Contains(f[1], ":")) {
			break
		}
	}
	for _, k := range []string{"Inode:", "User:", "Links:", "ctime:", "atime:", "mtime:"} {
		if !seen[k] {
			return s, fmt.Errorf("stat output lacks the %q line: %q", k, clip(out, 400))
		}
	}
	if s.Type == "symlink" && s.Size > 0 && s.Size < fastSymlinkMax {
		// The target may hold anything but NUL, newlines included, so it
		// is cut from the end by its known length, not parsed as a line.
		end := len(out) - 2
		start := end - int(s.Size)
		if start < len(fastLinkPrefix) || !bytes.HasSuffix(out, []byte("\"\n")) ||
			string(out[start-len(fastLinkPrefix):start]) != fastLinkPrefix {
			return s, fmt.Errorf("symlink of %d bytes without its target at the end of stat: %q", s.Size, clip(out, 400))
		}
		s.Target, s.HasTarget = string(out[start:end]), true
	}
	return s, nil
}

// parseInodeLine reads "Inode: 12   Type: regular    Mode:  0444   Flags: 0x80000".
func parseInodeLine(line string, s *statInfo) error {
	rest, ok := strings.CutPrefix(line, "Inode: ")
	if !ok {
		return fmt.Errorf("no inode number")
	}
	num, rest, ok := strings.Cut(rest, "   Type: ")
	if !ok {
		return fmt.Errorf("no type")
	}
	var err error
	if s.Ino, err = parseUint32([]byte(num), 10); err != nil {
		return err
	}
	typ, rest, ok := strings.Cut(rest, "    Mode:  ")
	if !ok {
		return fmt.Errorf("no mode")
	}
	s.Type = typ
	mode, flags, ok := strings.Cut(rest, "   Flags: 0x")
	if !ok {
		return fmt.Errorf("no flags")
	}
	if s.Perm, err = parseUint32([]byte(mode), 8); err != nil {
		return err
	}
	if s.Flags, err = parseUint32([]byte(flags), 16); err != nil {
		return err
	}
	return nil
}

// parseUserLine reads "User:     0   Group:     0   Project:     0   Size: 5".
func parseUserLine(f []string, s *statInfo) error {
	var err error
	for i := 0; i+1 < len(f); i += 2 {
		switch f[i] {
		case "User:":
			s.UID, err = parseUint32([]byte(f[i+1]), 10)
		case "Group:":
			s.GID, err = parseUint32([]byte(f[i+1]), 10)
		case "Size:":
			s.Size, err = strconv.ParseUint(f[i+1], 10, 64)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// parseTime reads " ctime: 0x00000001:00000000 -- Thu Jan  1 00:00:01 1970"
// (large inodes: seconds and the extra field) or "ctime: 0x00000001 -- …".
func parseTime(f []string) (Timestamp, error) {
	if len(f) < 2 || !strings.HasPrefix(f[1], "0x") {
		return Timestamp{}, fmt.Errorf("no time")
	}
	lo, extra, hasExtra := strings.Cut(f[1][2:], ":")
	l, err := parseUint32([]byte(lo), 16)
	if err != nil {
		return Timestamp{}, err
	}
	var x uint32
	if hasExtra {
		if x, err = parseUint32([]byte(extra), 16); err != nil {
			return Timestamp{}, err
		}
	}
	return decodeTime(l, x), nil
}
