package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/mkext4fs/mkext4fs/internal/units"
	"github.com/mkext4fs/mkext4fs/pkg/closure"
)

func init() {
	register("registration", "print the nix-path-registration of a closure", runRegistration)
}

func runRegistration(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "registration", "GRAPH...",
		"Prints the registration of the closure that nix-store --load-db reads: per\n"+
			"store path its NAR hash and size and its references. Hashes the graph lacks\n"+
			"are computed from the files; hashes it carries are checked against them.\n\n"+graphHelp)
	var (
		g        graphFlags
		root     string
		noVerify bool
	)
	g.register(fs)
	fs.StringVar(&root, "root", "/", "read store path /nix/store/x from `DIR`/nix/store/x")
	fs.BoolVar(&noVerify, "no-verify-hashes", false, "trust the hashes a structured graph carries instead of checking them against the files")
	files, err := parseFlags(env, fs, args)
	if err != nil {
		return err
	}
	c, err := g.load("registration", files)
	if err != nil {
		return err
	}
	var missing, given int
	for i := range c.Paths {
		if c.Paths[i].HasNar() && c.Paths[i].NarSize != 0 {
			given++
		} else {
			missing++
		}
	}
	start := time.Now()
	if err := c.Hash(ctx, closure.HashOptions{Root: root, Verify: !noVerify}); err != nil {
		return err
	}
	if err := c.WriteRegistration(env.Stdout); err != nil {
		return err
	}
	checked := "trusted"
	if !noVerify {
		checked = "verified"
	}
	fmt.Fprintf(env.Stderr, "registration: %d store paths, %s of NAR; %d hashed, %d %s in %s\n",
		len(c.Paths), units.Bytes(int64(c.NarBytes())), missing, given, checked, time.Since(start).Round(time.Millisecond))
	return nil
}
