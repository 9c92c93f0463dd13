package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Cpio writes an initramfs: a cpio archive in the "newc" format the kernel
// unpacks (Documentation/driver-api/early-userspace/buffer-format.rst).
// Entries are written in the order they are added; parent directories must
// come first. All entries are owned by root and dated 0.
type Cpio struct {
	w   io.Writer
	ino uint32
	err error
}

// NewCpio starts an archive on w.
func NewCpio(w io.Writer) *Cpio { return &Cpio{w: w, ino: 300000} }

// Linux file type bits, as cpio carries them in the mode field.
const (
	cpioDir     = 0o040000
	cpioFile    = 0o100000
	cpioSymlink = 0o120000
	cpioCharDev = 0o020000
)

func (c *Cpio) entry(name string, mode uint32, rdevMajor, rdevMinor uint32, data []byte) {
	if c.err != nil {
		return
	}
	c.ino++
	nlink := uint32(1)
	if mode&0o170000 == cpioDir {
		nlink = 2
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	b.WriteString(name)
	b.WriteByte(0)
	pad4(&b)
	b.Write(data)
	pad4(&b)
	_, c.err = c.w.Write(b.Bytes())
}

func pad4(b *bytes.Buffer) {
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
}

// Dir adds a directory; name has no leading slash.
func (c *Cpio) Dir(name string, perm uint32) { c.entry(name, cpioDir|perm, 0, 0, nil) }

// File adds a regular file.
func (c *Cpio) File(name string, perm uint32, data []byte) {
	c.entry(name, cpioFile|perm, 0, 0, data)
}

// Symlink adds a symbolic link.
func (c *Cpio) Symlink(name, target string) {
	c.entry(name, cpioSymlink|0o777, 0, 0, []byte(target))
}

// CharDev adds a character device node.
func (c *Cpio) CharDev(name string, perm, major, minor uint32) {
	c.entry(name, cpioCharDev|perm, major, minor, nil)
}

// Close writes the trailer and returns the first error.
func (c *Cpio) Close() error {
	c.entry("TRAILER!!!", 0, 0, 0, nil)
	return c.err
}

// Initramfs collects the files of an initramfs; Write lays them out with
// every parent directory first.
type Initramfs struct {
	dirs  map[string]bool
	files map[string]initFile
}

type initFile struct {
	perm   uint32
	data   []byte
	target string // symlink when not empty
	dev    [2]uint32
	isDev  bool
}

// NewInitramfs starts an empty one.
func NewInitramfs() *Initramfs {
	return &Initramfs{dirs: map[string]bool{}, files: map[string]initFile{}}
}

func (r *Initramfs) parents(name string) {
	for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
		r.dirs[d] = true
	}
}

// AddDir adds an (empty) directory.
func (r *Initramfs) AddDir(name string) {
	name = strings.TrimPrefix(name, "/")
	r.dirs[name] = true
	r.parents(name)
}

// AddFile adds a file with the given content.
func (r *Initramfs) AddFile(name string, perm uint32, data []byte) {
	name = strings.TrimPrefix(name, "/")
	r.files[name] = initFile{perm: perm, data: data}
	r.parents(name)
}

// AddSymlink adds a symbolic link.
func (r *Initramfs) AddSymlink(name, target string) {
	name = strings.TrimPrefix(name, "/")
	r.files[name] = initFile{target: target}
	r.parents(name)
}

// AddCharDev adds a character device node (the kernel needs /dev/console
// before devtmpfs is mounted, to give init its standard streams).
func (r *Initramfs) AddCharDev(name string, major, minor uint32) {
	name = strings.TrimPrefix(name, "/")
	r.files[name] = initFile{perm: 0o600, dev: [2]uint32{major, minor}, isDev: true}
	r.parents(name)
}

// AddHostFile copies a file of the host (following symlinks) to name.
func (r *Initramfs) AddHostFile(name, hostPath string) error {
	data, err := os.ReadFile(hostPath)
	if err != nil {
		return err
	}
	st, err := os.Stat(hostPath)
	if err != nil {
		return err
	}
	r.AddFile(name, uint32(st.Mode().Perm()), data)
	return nil
}

// AddProgram copies a dynamically linked program of the host and the
// shared libraries ldd says it loads, under their paths.
func (r *Initramfs) AddProgram(hostPath string) error {
	if err := r.AddHostFile(hostPath, hostPath); err != nil {
		return err
	}
	libs, err := sharedLibraries(hostPath)
	if err != nil {
		return err
	}
	for _, l := range libs {
		if err := r.AddHostFile(l, l); err != nil {
			return err
		}
	}
	return nil
}

var lddLine = regexp.MustCompile(`^\s*(?:\S+ => )?(/\S+) \(0x[0-9a-f]+\)$`)

// sharedLibraries asks ldd for the libraries (and the loader) a program
// needs.
func sharedLibraries(prog string) ([]string, error) {
	out, err := exec.Command("ldd", prog).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", prog, err)
	}
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if m := lddLine.FindStringSubmatch(sc.Text()); m != nil {
			libs = append(libs, m[1])
		} else if strings.Contains(sc.Text(), "not found") {
			return nil, fmt.Errorf("ldd %s: %s", prog, sc.Text())
		}
	}
	if len(libs) == 0 {
		return nil, fmt.Errorf("ldd %s printed no libraries:\n%s", prog, out)
	}
	return libs, nil
}

// Write writes the archive: directories (parents first), then the rest,
// each group sorted.
func (r *Initramfs) Write(w io.Writer) error {
	c := NewCpio(w)
	dirs := make([]string, 0, len(r.dirs))
	for d := range r.dirs {
		if _, isFile := r.files[d]; !isFile {
			dirs = append(dirs, d)
		}
	}
	sort.Strings(dirs)
	for _, d := range dirs {
		c.Dir(d, 0o755)
	}
	names := make([]string, 0, len(r.files))
	for n := range r.files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f := r.files[n]
		switch {
		case f.isDev:
			c.CharDev(n, f.perm, f.dev[0], f.dev[1])
		case f.target != "":
			c.Symlink(n, f.target)
		default:
			c.File(n, f.perm, f.data)
		}
	}
	return c.Close()
}

// Kernel is an installed Debian kernel: its image and its modules.
type Kernel struct {
	Version string
	Image   string // /boot/vmlinuz-VERSION
	Modules string // /lib/modules/VERSION
}

// FindKernel returns the newest kernel in /boot whose modules are
// installed.
func FindKernel() (*Kernel, error) {
	images, _ := filepath.Glob("/boot/vmlinuz-*")
	sort.Sort(sort.Reverse(sort.StringSlice(images)))
	for _, img := range images {
		v := strings.TrimPrefix(filepath.Base(img), "vmlinuz-")
		mods := filepath.Join("/lib/modules", v)
		if _, err := os.Stat(filepath.Join(mods, "modules.dep")); err != nil {
			continue
		}
		f, err := os.Open(img)
		if err != nil {
			continue
		}
		f.Close()
		return &Kernel{Version: v, Image: img, Modules: mods}, nil
	}
	return nil, fmt.Errorf("no readable /boot/vmlinuz-* with /lib/modules/<version>/modules.dep (Debian: apt-get install linux-image-amd64)")
}

// moduleName is how modprobe names a module file: the base name without
// .ko and its compression suffix, with '-' read as '_'.
func moduleName(file string) string {
	base := filepath.Base(file)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// ModuleOrder resolves modules (by name) with their dependencies from
// modules.dep and returns the module files in an order insmod can load
// them: every dependency before its user, each module once.
func (k *Kernel) ModuleOrder(names ...string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(k.Modules, "modules.dep"))
	if err != nil {
		return nil, err
	}
	deps := map[string][]string{} // module file -> dependency files
	byName := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		mod, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(rest)
		byName[moduleName(mod)] = mod
	}
	var order []string
	done := map[string]bool{}
	var visit func(mod string, depth int) error
	visit = func(mod string, depth int) error {
		if done[mod] {
			return nil
		}
		if depth > 50 {
			return fmt.Errorf("dependency loop at %s", mod)
		}
		// modules.dep lists each module's dependencies, transitively, so
		// that the last must be loaded first.
		ds := deps[mod]
		for i := len(ds) - 1; i >= 0; i-- {
			if err := visit(ds[i], depth+1); err != nil {
				return err
			}
		}
		done[mod] = true
		order = append(order, mod)
		return nil
	}
	for _, n := range names {
		mod, ok := byName[strings.ReplaceAll(n, "-", "_")]
		if !ok {
			return nil, fmt.Errorf("module %s is not in %s/modules.dep (built in, or missing?)", n, k.Modules)
		}
		if err := visit(mod, 0); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// ModuleContent returns a module file ready for insmod: compressed modules
// (.ko.xz, .ko.zst) are decompressed with xz or zstd.
func (k *Kernel) ModuleContent(rel string) ([]byte, error) {
	p := filepath.Join(k.Modules, rel)
	var tool string
	switch {
	case strings.HasSuffix(p, ".ko"):
		return os.ReadFile(p)
	case strings.HasSuffix(p, ".ko.xz"):
		tool = "xz"
	case strings.HasSuffix(p, ".ko.zst"):
		tool = "zstd"
	default:
		return nil, fmt.Errorf("%s: unknown module format", p)
	}
	out, err := exec.Command(tool, "-dc", p).Output()
	if err != nil {
		return nil, fmt.Errorf("%s -dc %s: %w", tool, p, err)
	}
	return out, nil
}
