// Package build runs the whole pipeline that turns a closure into an ext4
// image: closure → plan → script → mkfs → debugfs → e2fsck → checks.
package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mkext4fs/mkext4fs/internal/compress"
	"github.com/mkext4fs/mkext4fs/internal/e2fs"
	"github.com/mkext4fs/mkext4fs/internal/units"
	"github.com/mkext4fs/mkext4fs/pkg/closure"
	"github.com/mkext4fs/mkext4fs/pkg/debugfsgen"
	"github.com/mkext4fs/mkext4fs/pkg/plan"
)

// Profiles are the default feature lists.
var Profiles = map[string][]string{
	// e2fsprogs 1.47's ext4 defaults, without metadata_csum_seed (GRUB 2.06
	// refuses it) and orphan_file (e2fsck before 1.47 refuses it).
	"default": {"has_journal", "ext_attr", "resize_inode", "dir_index", "filetype", "extent",
		"64bit", "flex_bg", "sparse_super", "large_file", "huge_file", "dir_nlink", "extra_isize",
		"metadata_csum"},
	// For old boot loaders and kernels: no 64bit (some U-Boot builds cannot
	// boot from it), no metadata_csum (U-Boot cannot write such
	// filesystems).
	"legacy": {"has_journal", "ext_attr", "resize_inode", "dir_index", "filetype", "extent",
		"flex_bg", "sparse_super", "large_file", "huge_file", "dir_nlink", "extra_isize"},
}

// Options describe one image.
type Options struct {
	// Output is the image file to write. It appears only once complete.
	Output string
	// Graphs are the exportReferencesGraph files.
	Graphs  []string
	Closure closure.Options
	// Root is prefixed to store paths to find them on this machine.
	Root string
	// Files is a directory copied to the image root.
	Files string
	// RegistrationPath is where the registration goes in the image.
	RegistrationPath string
	// Timestamp is every inode's and the filesystem's time.
	Timestamp int64
	UID, GID  uint32
	// Headroom is the unreserved free space the image keeps, in bytes;
	// ExtraInodes the free inodes.
	Headroom    int64
	ExtraInodes int64
	// ReservedPercent of the blocks are reserved for root, as mke2fs -m.
	ReservedPercent float64
	Label, UUID     string
	// Features is the complete list of ext4 features of the image.
	Features []string
	Optimise bool
	// NoVerifyHashes trusts the hashes the graph carries.
	NoVerifyHashes bool
	// Compress is "" or "zstd".
	Compress string
	// Sync forces the finished image to the disk before it is moved to
	// Output. Without it the page cache writes it when it will, as after
	// cp (and as Nix leaves its build outputs).
	Sync  bool
	Tools e2fs.Tools
	// Log receives the progress lines; Verbose (optional) every command.
	Log     io.Writer
	Verbose io.Writer
	// StageBytes overrides plan.DefaultStageBytes (tests).
	StageBytes int64
	// BulkBlocks: files of at least this many blocks are copied into the
	// image by the tool (see DefaultBulkBlocks); Build takes 0 for
	// DefaultBulkBlocks and a negative number for never. Prepare copies
	// none, as a script alone must make the image.
	BulkBlocks int64
	// emptyDir holds the empty files bulk files are made from.
	emptyDir string
	// ToolVersion goes into the report.
	ToolVersion string
	// LiveProgress draws a progress bar in place (for a terminal).
	LiveProgress bool
}

// Prepared is the result of the steps before mkfs: the closure, the plan
// and the script.
type Prepared struct {
	Closure *closure.Closure
	Tree    *plan.Tree
	Script  *debugfsgen.Script
	// Registration is the planned registration file.
	Registration *plan.Node
	// empty makes the empty files bulk files are made from.
	empty func(uint32) (string, error)
}

// maxRegistrationBytes bounds the registration of a closure: every field
// at its longest (a 20-digit NAR size, a 52-character hash).
func maxRegistrationBytes(c *closure.Closure) int64 {
	var n int64
	for _, p := range c.Paths {
		n += int64(len(p.Path)) + 1 + int64(len("sha256:")+52) + 1 + 20 + 1 + 1 + 20 + 1
		for _, r := range p.References {
			n += int64(len(r)) + 1
		}
	}
	return n
}

// Prepare loads the closure, walks the content and generates the script.
// It runs nothing, and writes nothing but, for a build that copies files
// in bulk, the empty files they are made from.
func Prepare(ctx context.Context, o *Options) (*Prepared, error) {
	p, err := prepareTree(ctx, o, nil)
	if err != nil {
		return nil, err
	}
	if p.Script, err = p.generate(o); err != nil {
		return nil, err
	}
	return p, nil
}

// prepareTree is Prepare without the script. With a spill, the store
// paths are read while the script is written (see plan.Stream): the
// caller closes the tree.
func prepareTree(ctx context.Context, o *Options, spill plan.Spill) (*Prepared, error) {
	// The tools run in a directory of their own: give them absolute paths.
	for _, p := range []*string{&o.Output, &o.Root, &o.Files} {
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return nil, err
			}
			*p = abs
		}
	}
	c, err := closure.Load(o.Graphs, o.Closure)
	if err != nil {
		return nil, err
	}
	var (
		bulk  int64
		empty func(uint32) (string, error)
	)
	if o.emptyDir != "" && o.BulkBlocks > 0 {
		bulk, empty = o.BulkBlocks, (&emptyFiles{dir: o.emptyDir}).get
	}
	walk := plan.Walk
	if spill != nil && !o.Optimise {
		walk = func(ctx context.Context, opts plan.Options) (*plan.Tree, error) { return plan.Stream(ctx, opts, spill) }
	}
	t, err := walk(ctx, plan.Options{
		Root:       o.Root,
		StoreDir:   c.StoreDir,
		StorePaths: c.PathNames(),
		Files:      o.Files,
		UID:        o.UID,
		GID:        o.GID,
		Optimise:   o.Optimise,
		StageBytes: o.StageBytes,
		BulkBlocks: bulk,
		// A build hashes every store path while it populates the image:
		// the small files are read then (see plan.SmallReads).
		DeferSmall: o.emptyDir != "" && c.HashesAll(!o.NoVerifyHashes),
	})
	if err != nil {
		return nil, err
	}
	reg, err := t.AddLate(o.RegistrationPath, maxRegistrationBytes(c), 0o444)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("--registration-path: %w", err)
	}
	return &Prepared{Closure: c, Tree: t, Registration: reg, empty: empty}, nil
}

// generate writes the script of p. It only reads the tree.
func (p *Prepared) generate(o *Options) (*debugfsgen.Script, error) {
	return debugfsgen.Generate(p.Tree, p.scriptOptions(o))
}

func (p *Prepared) scriptOptions(o *Options) debugfsgen.Options {
	// A build merges staged directories itself; a script alone links
	// their entries in.
	return debugfsgen.Options{Empty: p.empty, Merge: o.emptyDir != ""}
}

// spool sets p.Script, with the lines of its first phase written to the
// file name instead. It only reads the tree.
func (p *Prepared) spool(o *Options, name string) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	opts := p.scriptOptions(o)
	opts.Spool = f
	s, err := debugfsgen.Generate(p.Tree, opts)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("write the script: %w", cerr)
	}
	if err != nil {
		return err
	}
	p.Script = s
	return nil
}

// Result tells what a build made.
type Result struct {
	Report *Report
}

type logger struct {
	w     io.Writer
	start time.Time
}

func (l *logger) printf(format string, args ...any) {
	if l.w == nil {
		return
	}
	fmt.Fprintf(l.w, format+"\n", args...)
}

// errImageFull marks a build that ran out of blocks in the image.
var errImageFull = errors.New("image full")

// Build makes the image. On any failure, and when ctx is cancelled,
// nothing is left at Output and the temporary files are removed.
func Build(ctx context.Context, o Options) (*Result, error) {
	switch {
	case o.BulkBlocks == 0:
		o.BulkBlocks = DefaultBulkBlocks
	case o.BulkBlocks < 0:
		o.BulkBlocks = 0
	}
	res, err := build(ctx, o, false)
	if errors.Is(err, errImageFull) {
		// A staged directory outgrew its estimate while it was built:
		// build again with room for the worst case.
		if o.Log != nil {
			fmt.Fprintf(o.Log, "the image ran short of blocks while building large directories (%v); building again with room for the worst case\n", err)
		}
		res, err = build(ctx, o, true)
	}
	return res, err
}

func build(ctx context.Context, o Options, worstCase bool) (res *Result, err error) {
	start := time.Now()
	log := &logger{w: o.Log, start: start}

	rep := newReport(&o)
	phase := rep.phaser()

	if err := o.Tools.Resolve(); err != nil {
		return nil, err
	}
	if o.Verbose != nil {
		t := o.Tools
		fmt.Fprintf(o.Verbose, "tools: mke2fs %s, debugfs %s, e2fsck %s, tune2fs %s, resize2fs %s, libfaketime %s\n",
			t.Mke2fs, t.Debugfs, t.E2fsck, t.Tune2fs, t.Resize2fs, t.Libfaketime)
	}
	version, err := o.Tools.E2fsprogsVersion(ctx)
	if err != nil {
		return nil, err
	}
	if version.Less(e2fs.MinVersion) {
		return nil, fmt.Errorf("e2fsprogs %s is too old: mkext4fs needs %s or newer", version, e2fs.MinVersion)
	}
	rep.E2fsprogs = version.String()

	if o.Output, err = filepath.Abs(o.Output); err != nil {
		return nil, err
	}
	dir := filepath.Dir(o.Output)
	work, err := os.MkdirTemp(dir, ".mkext4fs-")
	if err != nil {
		return nil, hostSpace(fmt.Errorf("temporary directory beside --output: %w", err), dir)
	}
	cancelHash := func() {}
	defer func() {
		cancelHash()
		if rmErr := os.RemoveAll(work); rmErr != nil && err == nil {
			err = fmt.Errorf("remove %s: %w", work, rmErr)
		}
	}()
	o.emptyDir = filepath.Join(work, "empty")

	// A large closure is not held in memory: the store paths are read
	// while the script is written, and each is let go once it is, into
	// a file the checks at the end read back.
	spill, err := os.OpenFile(filepath.Join(work, "walk"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, hostSpace(err, dir)
	}
	defer spill.Close()
	prep, err := prepareTree(ctx, &o, spill)
	if err != nil {
		return nil, err
	}
	defer prep.Tree.Close()
	// The script goes to a file: a large closure's script is not held in
	// memory. A streamed tree is complete once it is written; a whole
	// one (under --optimise) is sized and its image made meanwhile.
	// Every return waits for it: it writes into work.
	scriptFile := filepath.Join(work, "script")
	scriptDone := make(chan error, 1)
	go func() {
		scriptDone <- hostSpace(prep.spool(&o, scriptFile), dir)
	}()
	scriptWait := sync.OnceValue(func() error { return <-scriptDone })
	defer scriptWait()
	// failed prefers the script's error, which names the input, to
	// the one that ended the build while the script was being written.
	failed := func(err error) error {
		if serr := scriptWait(); serr != nil {
			return serr
		}
		return err
	}
	c, t := prep.Closure, prep.Tree
	if t.Streamed() {
		// The content is known once the script is written.
		if err := scriptWait(); err != nil {
			return nil, err
		}
	}
	phase("plan")
	stats := t.Stats()
	log.printf("closure: %d store paths; content: %d directories, %d files, %d symlinks, %s",
		len(c.Paths), stats.Dirs, stats.Files, stats.Symlinks, units.Bytes(stats.Bytes))
	if big := t.BigWrite(); big != nil && version == (e2fs.Version{Major: 1, Minor: 47, Patch: 3}) {
		return nil, failed(fmt.Errorf("%s: %s is larger than 2 GiB, which e2fsprogs 1.47.3 cannot copy (\"Ext2 file too big\"); use e2fsprogs 1.47.4 or newer (or 1.47.2)", big.Path(), units.Bytes(big.Size)))
	}

	cfg := filepath.Join(work, "config")
	if err := os.Mkdir(cfg, 0o700); err != nil {
		return nil, failed(err)
	}
	r := &e2fs.Runner{Tools: o.Tools, Time: o.Timestamp, ConfigDir: cfg, Verbose: o.Verbose, Version: version}

	csum := contains(o.Features, "metadata_csum")
	mkfsFeatures := o.Features
	if csum {
		// Checksums are added at the end: debugfs would verify one on
		// every directory block it scans.
		mkfsFeatures = without(o.Features, "metadata_csum", "metadata_csum_seed")
	}
	if err := r.WriteConfig(mkfsFeatures); err != nil {
		return nil, failed(err)
	}
	// With small files unread, need is an upper bound until they are.
	geometry := plan.Geometry{MetadataCsum: csum, WorstCasePeak: worstCase, Merge: o.emptyDir != "" && t.HasStaged()}
	need := t.Need(geometry)
	geo, err := fitSize(ctx, r, work, &o, need)
	if err != nil {
		return nil, failed(hostSpace(err, dir))
	}
	log.printf("plan: %d inodes, %s of data; image %s (%d blocks, %d inodes)",
		need.Inodes, units.Bytes(need.DataBlocks*plan.BlockSize), units.Bytes(geo.Blocks*plan.BlockSize), geo.Blocks, geo.Inodes)
	phase("size")

	image := filepath.Join(work, "image")
	if err := createSparse(image, geo.Blocks*plan.BlockSize); err != nil {
		return nil, failed(err)
	}
	if err := r.Mkfs(ctx, image, geo.mkfsOptions(&o)); err != nil {
		return nil, failed(hostSpace(err, dir))
	}
	phase("mkfs")
	if err := scriptWait(); err != nil {
		return nil, err
	}
	phase("script")

	// Hash while the image is populated: the registration goes in last.
	hashDone := make(chan error, 1)
	hashCtx, cancel := context.WithCancel(ctx)
	cancelHash = cancel
	// debugfs keeps a core busy: one hashing worker waits for its end.
	// Beside it, the hashing and the copies slow debugfs down even at a
	// lower priority, more with more of them.
	release := make(chan struct{})
	releaseHash := sync.OnceFunc(func() { close(release) })
	hashOpts := closure.HashOptions{Root: o.Root, Verify: !o.NoVerifyHashes, Background: true, Held: 1, Release: release}
	var small *plan.SmallReads
	if size, ok := t.SmallSize(); ok {
		small = &plan.SmallReads{}
		hashOpts.Small, hashOpts.SmallSize = small.Add, size
	}
	go func() {
		hashDone <- c.Hash(hashCtx, hashOpts)
	}()
	hashWait := func() error {
		select {
		case err := <-hashDone:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	copier, err := newBulkCopier(ctx, image, uint64(geo.Blocks))
	if err != nil {
		return nil, err
	}
	defer copier.close()
	merges := newMerger(prep.Script)
	progress, endProgress := newProgress(log, prep.Script.Lines(), o.LiveProgress)
	defer endProgress()
	// A build's script has one phase, in scriptFile: staged directories
	// are merged.
	if len(prep.Script.Phases) != 1 || len(prep.Script.Phases[0]) != 0 {
		return nil, fmt.Errorf("internal error: a script of %d phases, not one in a file", len(prep.Script.Phases))
	}
	// Directory hashes the same on every build host: mke2fs marks them
	// signed or unsigned by the host's char type.
	first := []string{"ssv flags 1"}
	script, allocated, err := copier.script(prep.Script, 0, first, nil, progress)
	if err != nil {
		return nil, err
	}
	script.File, script.FileLines = scriptFile, prep.Script.Spooled
	merges.hook(script, prep.Script.Spooled)
	err = r.RunDebugfs(ctx, image, script)
	releaseHash()
	if err != nil {
		if cause := sourceFault(t); cause != nil {
			return nil, cause // the cause, with the file's path
		}
		return nil, imageSpace(hostSpace(err, dir), need, geo)
	}
	if err := allocated(); err != nil {
		return nil, err
	}
	// The copies end before e2fsck or another debugfs opens the image.
	if err := copier.wait(); err != nil {
		return nil, hostSpace(err, dir)
	}
	endProgress()
	phase("populate")

	if len(prep.Script.Merges) > 0 {
		if err := merge(ctx, r, copier, merges, t, image); err != nil {
			if cause := sourceFault(t); cause != nil {
				return nil, cause
			}
			return nil, imageSpace(hostSpace(err, dir), need, geo)
		}
		phase("merge")
	}

	if err := hashWait(); err != nil {
		return nil, err
	}
	log.printf("hashed %d store paths, %s of NAR", len(c.Paths), units.Bytes(int64(c.NarBytes())))
	phase("hash_wait")
	var reg bytes.Buffer
	if err := c.WriteRegistration(&reg); err != nil {
		return nil, err
	}
	regFile := filepath.Join(work, "registration")
	if err := os.WriteFile(regFile, reg.Bytes(), 0o444); err != nil {
		return nil, hostSpace(err, dir)
	}
	prep.Registration.SetHost(regFile)
	// The tree changes no more but for the counts of the small files,
	// which settle it while the last debugfs runs and the checksums are
	// added: only the checks of the finished image need them. (A streamed
	// tree reads its store paths back for it.)
	var (
		settling  sync.WaitGroup
		settleErr error
	)
	if small != nil {
		settling.Add(1)
		go func() { defer settling.Done(); settleErr = t.Settle(small) }()
	}
	defer settling.Wait()
	late, err := debugfsgen.Late(t, csum)
	if err != nil {
		return nil, err
	}
	// The last phase's bulk files are marked initialised first.
	pending, err := copier.takePending()
	if err != nil {
		return nil, err
	}
	late = append(pending, late...)
	if err := r.Debugfs(ctx, image, late, nil); err != nil {
		return nil, imageSpace(hostSpace(err, dir), need, geo)
	}
	if err := copier.close(); err != nil {
		return nil, err
	}
	rep.Bulk.Files, rep.Bulk.Bytes = int64(len(prep.Script.Bulk)), copier.copied
	// Every source file was read by now: check none changed meanwhile,
	// while the checksums are added.
	var (
		unchanged  sync.WaitGroup
		changedErr error
	)
	unchanged.Add(1)
	go func() { defer unchanged.Done(); changedErr = t.CheckUnchanged() }()
	defer unchanged.Wait()
	phase("registration")
	if csum {
		late := []string{"metadata_csum"}
		if contains(o.Features, "metadata_csum_seed") {
			late = append(late, "metadata_csum_seed")
		}
		if err := r.EnableFeatures(ctx, image, late); err != nil {
			return nil, hostSpace(err, dir)
		}
	}
	if err := r.Optimize(ctx, image); err != nil {
		return nil, hostSpace(err, dir)
	}
	unpad, err := debugfsgen.Unpad(t, csum)
	if err != nil {
		return nil, err
	}
	if len(unpad) > 0 {
		if err := r.Debugfs(ctx, image, unpad, nil); err != nil {
			return nil, hostSpace(err, dir)
		}
	}
	phase("checksums")
	// e2fsck -fyD found nothing to repair: the counts are final. The
	// image is checked once, as it is handed over, after any trim.
	sb, err := e2fs.ReadSuperblock(image)
	if err != nil {
		return nil, err
	}
	unchanged.Wait()
	if changedErr != nil {
		return nil, changedErr
	}
	settling.Wait()
	if settleErr != nil {
		if cause := sourceFault(t); cause != nil {
			return nil, cause
		}
		return nil, settleErr
	}
	if small != nil {
		need = t.Need(geometry)
	}
	if err := checkContent(sb, need, geo, int64(reg.Len()), prep.Registration.Size); err != nil {
		return nil, err
	}
	if sb, err = shrinkToFit(ctx, r, image, sb, &o); err != nil {
		return nil, hostSpace(err, dir)
	}
	if err := r.Check(ctx, image); err != nil {
		return nil, err
	}
	if err := checkResult(sb, &o, need); err != nil {
		return nil, err
	}
	phase("check")

	final := image
	if o.Compress == "zstd" {
		final = image + ".zst"
		if err := compressFile(ctx, image, final); err != nil {
			return nil, hostSpace(err, dir)
		}
		phase("compress")
	}
	if o.Sync {
		if err := syncFile(final); err != nil {
			return nil, hostSpace(err, dir)
		}
		phase("sync")
	}
	rep.fill(sb, c, t, need, geo)
	rep.Seconds["total"] = round(time.Since(start).Seconds())
	if err := os.Rename(final, o.Output); err != nil {
		return nil, fmt.Errorf("move the image to %s: %w", o.Output, err)
	}
	log.printf("wrote %s (%s, %d inodes, %d store paths) in %.1f s",
		o.Output, units.Bytes(int64(sb.BlocksCount)*plan.BlockSize), sb.UsedInodes(), len(c.Paths), time.Since(start).Seconds())
	return &Result{Report: rep}, nil
}

// sourceFault tells why a step that read the store may have failed: a
// file changed since the walk, or one the walk left unread (see
// plan.Options.DeferSmall) that cannot be opened. It is nil when neither.
func sourceFault(t *plan.Tree) error {
	if err := t.CheckUnchanged(); err != nil {
		return err
	}
	return t.CheckReadable()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func without(list []string, drop ...string) []string {
	var out []string
	for _, x := range list {
		if !contains(drop, x) {
			out = append(out, x)
		}
	}
	return out
}

func createSparse(name string, size int64) error {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("make the image file of %s: %w", units.Bytes(size), err)
	}
	return f.Close()
}

func syncFile(name string) error {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", name, err)
	}
	return f.Close()
}

func compressFile(ctx context.Context, src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := compress.Zstd(ctx, out, in); err != nil {
		out.Close()
		return fmt.Errorf("compress the image: %w", err)
	}
	return out.Close()
}

// newProgress returns a function that reports progress: a line every few
// seconds, or on a terminal a bar redrawn in place.
func newProgress(log *logger, total int, live bool) (update func(done int), finish func()) {
	var mu sync.Mutex
	last := time.Now()
	drawn := false
	every := 3 * time.Second
	if live {
		every = 200 * time.Millisecond
	}
	update = func(done int) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(last) < every || total == 0 || log.w == nil {
			return
		}
		last = time.Now()
		pct := done * 100 / total
		if !live {
			log.printf("populate: %d/%d commands (%d%%)", done, total, pct)
			return
		}
		const width = 30
		bar := strings.Repeat("#", pct*width/100) + strings.Repeat(".", width-pct*width/100)
		fmt.Fprintf(log.w, "\rpopulate [%s] %3d%% %d/%d", bar, pct, done, total)
		drawn = true
	}
	finish = func() {
		mu.Lock()
		defer mu.Unlock()
		if drawn {
			fmt.Fprint(log.w, "\r\033[K")
			drawn = false
		}
	}
	return update, finish
}

// hostSpace tells the build host's full disk apart from a full image.
func hostSpace(err error, dir string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if strings.Contains(msg, "No space left on device") || isENOSPC(err) {
		return fmt.Errorf("the build host's disk is full: no space left in %s (the image is built there, beside --output): %w", dir, err)
	}
	return err
}

// imageSpace tells a full image apart from other debugfs failures.
func imageSpace(err error, need plan.Need, geo *geometry) error {
	var de *e2fs.DebugfsError
	if errors.As(err, &de) {
		m := de.Message
		switch {
		case strings.Contains(m, "Could not allocate inode"), strings.Contains(m, "No free inodes"):
			return fmt.Errorf("the image ran out of inodes (%d planned for %d entries): %w; please report this", geo.Inodes, need.Inodes, err)
		case strings.Contains(m, "Could not allocate block"), strings.Contains(m, "No free space in the directory"):
			return fmt.Errorf("the image ran out of blocks (%d planned): %w: %w", geo.Blocks, err, errImageFull)
		}
	}
	return err
}

func round(x float64) float64 { return float64(int64(x*1000+0.5)) / 1000 }
