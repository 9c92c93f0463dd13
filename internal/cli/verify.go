package cli

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mkext4fs/mkext4fs/pkg/closure"
	"github.com/mkext4fs/mkext4fs/pkg/imagecheck"
)

func init() {
	register("verify", "check that an image matches a closure, without mounting it", runVerify)
}

// maxDifferences is how many differences verify lists before counting the
// rest.
const maxDifferences = 20

type verifyOptions struct {
	root             string
	storeDir         string
	attrsKey         string
	registrationPath string
	timestamp        int64
	owner            string
	files            string
	debugfs          string
	e2fsck           string
}

func runVerify(ctx context.Context, env *Env, args []string) error {
	var o verifyOptions
	fs := newFlagSet(env, "verify", "IMAGE GRAPH...",
		"Reads IMAGE through debugfs, without mounting it, and checks that it holds exactly the\n"+
			"closure of the GRAPH files (exportReferencesGraph output) as mkext4fs build lays it out:\n"+
			"every store path with its NAR hash, nothing else in the store, the registration byte for\n"+
			"byte, modes, owners and times, directory indexes, and e2fsck -fn clean.\n"+
			"Exits 0 when it matches, 1 with the list of differences when it does not.")
	fs.StringVar(&o.root, "root", "", "read store path /nix/store/x from `DIR`/nix/store/x (hashes missing from the graph, modes)")
	fs.StringVar(&o.storeDir, "store-dir", closure.DefaultStoreDir, "the store `directory`")
	fs.StringVar(&o.attrsKey, "attrs-key", "", "read only this `key` of a structured-attrs graph")
	fs.StringVar(&o.registrationPath, "registration-path", imagecheck.DefaultRegistrationPath, "where the registration is in the image")
	fs.Int64Var(&o.timestamp, "timestamp", 1, "every inode time, in `seconds` since the epoch")
	fs.StringVar(&o.owner, "owner", "0:0", "`uid:gid` of everything inside the store paths")
	fs.StringVar(&o.files, "files", "", "the `DIR` given to build --files: the image must hold exactly its content besides the store")
	fs.StringVar(&o.debugfs, "debugfs", "", "the debugfs `program` (default: found on PATH, /usr/sbin, /sbin)")
	fs.StringVar(&o.e2fsck, "e2fsck", "", "the e2fsck `program` (default: found on PATH, /usr/sbin, /sbin)")
	rest, err := parseFlags(env, fs, args)
	if err != nil {
		return err
	}
	if len(rest) < 2 {
		return usagef("verify needs an IMAGE and at least one GRAPH file")
	}
	image, graphs := rest[0], rest[1:]
	uid, gid, err := parseVerifyOwner(o.owner)
	if err != nil {
		return usagef("--owner: %v", err)
	}
	if o.timestamp < math.MinInt32 || o.timestamp >= 1<<34+math.MinInt32 {
		return usagef("--timestamp %d is outside what ext4 can store", o.timestamp)
	}
	if o.files != "" {
		if st, err := os.Stat(o.files); err != nil || !st.IsDir() {
			return usagef("--files %s: not a directory", o.files)
		}
	}

	c, err := closure.Load(graphs, closure.Options{StoreDir: o.storeDir, AttrsKey: o.attrsKey})
	if err != nil {
		return err
	}
	// Hashes the graph lacks (text form) come from the source store.
	start := time.Now()
	if err := c.Hash(ctx, closure.HashOptions{Root: o.root}); err != nil {
		return fmt.Errorf("hashing the closure: %w", err)
	}
	fmt.Fprintf(env.Stderr, "verify: closure of %d store paths, NAR hashes known: %.1f s\n", len(c.Paths), time.Since(start).Seconds())
	source := o.root
	if source == "" {
		source = "/"
	}
	report, err := imagecheck.Verify(ctx, image, imagecheck.Options{
		Closure:          c,
		RegistrationPath: o.registrationPath,
		Timestamp:        o.timestamp,
		UID:              uid,
		GID:              gid,
		Source:           source,
		Files:            o.files,
		Tools:            imagecheck.Tools{Debugfs: o.debugfs, E2fsck: o.e2fsck},
		Logf: func(format string, args ...any) {
			fmt.Fprintf(env.Stderr, "verify: "+format+"\n", args...)
		},
	})
	if err != nil {
		return err
	}
	for _, w := range report.Warnings {
		fmt.Fprintf(env.Stderr, "verify: warning: %s\n", w)
	}
	if report.Match() {
		_, err := fmt.Fprintf(env.Stdout, "%s matches: %d store paths, %d entries\n", image, report.StorePaths, report.Entries)
		return err
	}
	var b strings.Builder
	for _, d := range report.Summary(maxDifferences) {
		b.WriteString(d)
		b.WriteByte('\n')
	}
	if _, err := fmt.Fprint(env.Stdout, b.String()); err != nil {
		return err
	}
	n := len(report.Differences)
	noun := "differences"
	if n == 1 {
		noun = "difference"
	}
	return fmt.Errorf("%s does not match the closure: %d %s", image, n, noun)
}

// parseVerifyOwner reads "uid:gid".
func parseVerifyOwner(s string) (uint32, uint32, error) {
	u, g, ok := strings.Cut(s, ":")
	if !ok {
		return 0, 0, errors.New("want uid:gid, numeric")
	}
	uid, err1 := strconv.ParseUint(u, 10, 32)
	gid, err2 := strconv.ParseUint(g, 10, 32)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%q: want uid:gid, numeric", s)
	}
	return uint32(uid), uint32(gid), nil
}
