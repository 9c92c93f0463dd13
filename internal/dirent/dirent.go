// Package dirent reads directories and symlinks by name in a directory open
// as a descriptor, for the walks over store paths (the plan's and the NAR
// hasher's): a lookup of one name in an open directory costs less than one
// of a whole path.
package dirent

import (
	"errors"
	"sort"

	"golang.org/x/sys/unix"
)

// MaxOpenDepth is the depth down to which a walk holds a descriptor for
// each directory on its way down; deeper, it looks up whole paths, so a
// tree of any depth needs a bounded number of descriptors.
const MaxOpenDepth = 32

// ReadNames lists the directory open at fd, sorted bytewise (the order of
// a NAR's entries and of the walk). buf receives the raw entries; nil
// allocates one.
func ReadNames(fd int, buf []byte) ([]string, error) {
	if buf == nil {
		buf = make([]byte, 32<<10)
	}
	var names []string
	for {
		n, err := unix.ReadDirent(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	sort.Strings(names)
	return names, nil
}

// Readlink reads the target of the symlink name in the directory open at
// dirfd (name may be a whole path with AT_FDCWD).
func Readlink(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		b := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, b)
		for errors.Is(err, unix.EINTR) {
			n, err = unix.Readlinkat(dirfd, name, b)
		}
		if err != nil {
			return "", err
		}
		if n < size {
			return string(b[:n]), nil
		}
	}
}
