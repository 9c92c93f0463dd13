package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mkext4fs/mkext4fs/internal/build"
	"github.com/mkext4fs/mkext4fs/internal/e2fs"
	"github.com/mkext4fs/mkext4fs/internal/units"
	"github.com/mkext4fs/mkext4fs/pkg/closure"
	"golang.org/x/sys/unix"
)

func init() {
	register("build", "build the ext4 image of a closure", runBuild)
	register("script", "print the debugfs script a build would run", runScript)
}

type buildFlags struct {
	output, label, uuid, root, files, regPath string
	owner, headroom, features, profile        string
	report, compress, storeDir, attrsKey      string
	timestamp, extraInodes, bulkBlocks        int64
	reserved                                  float64
	optimise, noVerify, verbose, sync         bool
	tools                                     e2fs.Tools
}

func (f *buildFlags) register(fs *flag.FlagSet, withOutput bool) {
	if withOutput {
		fs.StringVar(&f.output, "output", "", "the image file to write (required)")
		fs.StringVar(&f.report, "report", "", "write a JSON build report to this file")
		fs.StringVar(&f.compress, "compress", "", `compress the image: "zstd"`)
		fs.BoolVar(&f.verbose, "v", false, "print every command run and every debugfs command")
		fs.BoolVar(&f.sync, "sync", false, "force the image to the disk (fsync) before moving it to --output")
		fs.Int64Var(&f.bulkBlocks, "bulk-blocks", build.DefaultBulkBlocks, "copy files of at least this many 4 KiB blocks into the image directly instead of through debugfs' write (0: never)")
	}
	fs.StringVar(&f.label, "label", "NIXOS_SD", "volume label (at most 16 bytes)")
	fs.StringVar(&f.uuid, "uuid", "44444444-4444-4444-8888-888888888888", "filesystem UUID, also the directory hash seed")
	fs.StringVar(&f.root, "root", "", "read store path /nix/store/x from DIR/nix/store/x")
	fs.StringVar(&f.files, "files", "", "copy the content of this directory to the image root")
	fs.StringVar(&f.regPath, "registration-path", "/nix-path-registration", "where the registration goes in the image")
	fs.Int64Var(&f.timestamp, "timestamp", 1, "time of every inode and of the filesystem, in seconds since the epoch")
	fs.StringVar(&f.owner, "owner", "0:0", "UID:GID owning the store paths' files")
	fs.StringVar(&f.headroom, "headroom", "16MiB", "unreserved free space the image keeps (e.g. 0, 512KiB, 16MiB, 1GiB)")
	fs.Int64Var(&f.extraInodes, "extra-inodes", 4096, "free inodes the image keeps")
	fs.Float64Var(&f.reserved, "reserved-percent", 5, "percentage of blocks reserved for root, as mke2fs -m")
	fs.StringVar(&f.profile, "profile", "default", "feature profile: default or legacy")
	fs.StringVar(&f.features, "features", "", "change the profile's features: comma-separated, FEATURE adds, ^FEATURE removes")
	fs.BoolVar(&f.optimise, "optimise", false, "store identical files (same content and mode) once, hard-linked")
	fs.BoolVar(&f.noVerify, "no-verify-hashes", false, "trust the NAR hashes the graph carries instead of checking them")
	fs.StringVar(&f.storeDir, "store-dir", closure.DefaultStoreDir, "the store directory")
	fs.StringVar(&f.attrsKey, "attrs-key", "", "read only this key of a structured-attrs graph")
	fs.StringVar(&f.tools.Mke2fs, "mke2fs", "", "mke2fs to run (default: from PATH)")
	fs.StringVar(&f.tools.Debugfs, "debugfs", "", "debugfs to run (default: from PATH)")
	fs.StringVar(&f.tools.E2fsck, "e2fsck", "", "e2fsck to run (default: from PATH)")
	fs.StringVar(&f.tools.Tune2fs, "tune2fs", "", "tune2fs to run (default: from PATH)")
	fs.StringVar(&f.tools.Resize2fs, "resize2fs", "", "resize2fs to run (default: from PATH)")
	fs.StringVar(&f.tools.Libfaketime, "libfaketime", "", "the libfaketime.so.1 to preload into the tools (default: beside faketime on PATH, or in /usr/lib)")
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// options checks the flags and turns them into build options.
func (f *buildFlags) options(env *Env, graphs []string) (build.Options, error) {
	o := build.Options{
		Output: f.output, Graphs: graphs,
		Closure:          closure.Options{StoreDir: f.storeDir, AttrsKey: f.attrsKey},
		Root:             f.root,
		Files:            f.files,
		RegistrationPath: f.regPath,
		Timestamp:        f.timestamp,
		ExtraInodes:      f.extraInodes,
		ReservedPercent:  f.reserved,
		Label:            f.label,
		UUID:             strings.ToLower(f.uuid),
		Optimise:         f.optimise,
		NoVerifyHashes:   f.noVerify,
		Compress:         f.compress,
		Sync:             f.sync,
		Tools:            f.tools,
		Log:              env.Stderr,
		ToolVersion:      env.Version,
	}
	if len(graphs) == 0 {
		return o, usagef("no graph files given (the files exportReferencesGraph writes)")
	}
	if len(f.label) > 16 {
		return o, usagef("--label %q is longer than 16 bytes", f.label)
	}
	if !uuidRE.MatchString(f.uuid) {
		return o, usagef("--uuid %q is not a UUID (8-4-4-4-12 hexadecimal digits)", f.uuid)
	}
	if f.timestamp < 0 || f.timestamp > 1<<32-1 {
		return o, usagef("--timestamp %d is outside 0..4294967295", f.timestamp)
	}
	if f.extraInodes < 0 {
		return o, usagef("--extra-inodes %d is negative", f.extraInodes)
	}
	switch {
	case f.bulkBlocks < 0:
		return o, usagef("--bulk-blocks %d is negative", f.bulkBlocks)
	case f.bulkBlocks == 0:
		o.BulkBlocks = -1
	default:
		o.BulkBlocks = f.bulkBlocks
	}
	if f.reserved < 0 || f.reserved > 50 {
		return o, usagef("--reserved-percent %g is outside 0..50", f.reserved)
	}
	uid, gid, err := parseOwner(f.owner)
	if err != nil {
		return o, err
	}
	o.UID, o.GID = uid, gid
	if o.Headroom, err = units.ParseSize(f.headroom); err != nil {
		return o, usagef("--headroom: %v", err)
	}
	if o.Features, err = featureList(f.profile, f.features); err != nil {
		return o, err
	}
	switch f.compress {
	case "", "zstd":
	default:
		return o, usagef("--compress %q: only zstd is supported", f.compress)
	}
	if f.root != "" {
		if o.Root, err = filepath.Abs(f.root); err != nil {
			return o, err
		}
	}
	return o, nil
}

func parseOwner(s string) (uint32, uint32, error) {
	u, g, ok := strings.Cut(s, ":")
	uid, err1 := strconv.ParseUint(u, 10, 32)
	gid, err2 := strconv.ParseUint(g, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, usagef("--owner %q is not UID:GID in numbers", s)
	}
	return uint32(uid), uint32(gid), nil
}

// featureList applies the --features changes to a profile.
func featureList(profile, changes string) ([]string, error) {
	base, ok := build.Profiles[profile]
	if !ok {
		return nil, usagef("--profile %q: choose default or legacy", profile)
	}
	set := map[string]bool{}
	for _, f := range base {
		set[f] = true
	}
	if changes != "" {
		for _, item := range strings.Split(changes, ",") {
			item = strings.TrimSpace(item)
			on := true
			switch {
			case strings.HasPrefix(item, "^"):
				on, item = false, item[1:]
			case strings.HasPrefix(item, "+"):
				item = item[1:]
			}
			if !e2fs.KnownFeature(item) {
				return nil, usagef("--features: unknown ext4 feature %q", item)
			}
			set[item] = on
		}
	}
	if set["metadata_csum_seed"] && !set["metadata_csum"] {
		return nil, usagef("--features: metadata_csum_seed needs metadata_csum")
	}
	var out []string
	for f, on := range set {
		if on {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out, nil
}

const buildSummary = `Builds the ext4 root filesystem of a NixOS SD image: /nix/store with every
path of the closure given by the exportReferencesGraph files GRAPH (text or
structured-attrs JSON), the nix-path-registration, and the --files content.
The image is sized from its content, with --headroom free, and is the same
bytes on every machine.`

func runBuild(ctx context.Context, env *Env, args []string) error {
	var f buildFlags
	fs := newFlagSet(env, "build", "--output FILE GRAPH...", buildSummary)
	f.register(fs, true)
	graphs, err := parseFlags(env, fs, args)
	if err != nil {
		return err
	}
	if f.output == "" {
		return usagef("build: --output is required")
	}
	o, err := f.options(env, graphs)
	if err != nil {
		return err
	}
	if f.verbose {
		o.Verbose = env.Stderr
	}
	o.LiveProgress = !f.verbose && isTerminal(env.Stderr)
	if st, err := os.Stat(filepath.Dir(f.output)); err != nil || !st.IsDir() {
		return fmt.Errorf("--output %s: directory %s does not exist", f.output, filepath.Dir(f.output))
	}
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		if o.Optimise {
			// The whole plan is held (about 30 MB for 100k inodes):
			// collect before the heap doubles, and harder near the
			// limit.
			debug.SetGCPercent(50)
			defer followLiveHeap(memoryLimit, 100*time.Millisecond)()
		} else {
			// About one store path is held at a time, a few MB: the
			// collector runs when the heap reaches the limit, rather
			// than every few MB of garbage the walk makes.
			debug.SetGCPercent(-1)
			defer followLiveHeap(streamLimit, 100*time.Millisecond)()
		}
	}
	res, err := build.Build(ctx, o)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted: nothing written to %s", f.output)
		}
		return err
	}
	if f.report != "" {
		return res.Report.WriteFile(f.report)
	}
	return nil
}

func runScript(ctx context.Context, env *Env, args []string) error {
	var f buildFlags
	fs := newFlagSet(env, "script", "GRAPH...", "Prints the debugfs script a build with the same flags would run.")
	f.register(fs, false)
	graphs, err := parseFlags(env, fs, args)
	if err != nil {
		return err
	}
	o, err := f.options(env, graphs)
	if err != nil {
		return err
	}
	prep, err := build.Prepare(ctx, &o)
	if err != nil {
		return err
	}
	return writeScript(env.Stdout, prep)
}

func writeScript(w io.Writer, prep *build.Prepared) error {
	for i := range prep.Script.Phases {
		if i > 0 {
			if _, err := fmt.Fprintf(w, "# phase %d, after e2fsck -fyD\n", i+1); err != nil {
				return err
			}
		}
		if _, err := w.Write(prep.Script.Bytes(i)); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "# last: the registration is written to %s once the NAR hashes are known\n", prep.Registration.Path())
	return err
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
