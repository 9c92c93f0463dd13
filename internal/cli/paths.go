package cli

import (
	"bufio"
	"context"
	"flag"
	"fmt"

	"github.com/mkext4fs/mkext4fs/pkg/closure"
)

func init() {
	register("paths", "print the store paths of a closure graph", runPaths)
}

// graphFlags are the flags of every subcommand that reads graph files.
type graphFlags struct {
	storeDir string
	attrsKey string
}

func (g *graphFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&g.storeDir, "store-dir", closure.DefaultStoreDir, "the store `directory` every path must sit directly under")
	fs.StringVar(&g.attrsKey, "attrs-key", "", "read only this top-level `key` of a structured-attrs (JSON) graph (default: every list of store paths)")
}

// load checks the flags and the arguments and reads the graph files.
func (g *graphFlags) load(cmd string, files []string) (*closure.Closure, error) {
	opts := closure.Options{StoreDir: g.storeDir, AttrsKey: g.attrsKey}
	if err := opts.Validate(); err != nil {
		return nil, usagef("%s: --store-dir: %v", cmd, err)
	}
	if len(files) == 0 {
		return nil, usagef("%s: no graph files given", cmd)
	}
	return closure.Load(files, opts)
}

const graphHelp = `GRAPH is a file Nix wrote for exportReferencesGraph: the text form, or the
.attrs.json of a derivation with __structuredAttrs (told apart by content).
Several graphs are merged.`

func runPaths(_ context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "paths", "GRAPH...",
		"Prints every store path of the closure, sorted, one per line.\n\n"+graphHelp)
	var g graphFlags
	g.register(fs)
	files, err := parseFlags(env, fs, args)
	if err != nil {
		return err
	}
	c, err := g.load("paths", files)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(env.Stdout)
	for _, p := range c.PathNames() {
		fmt.Fprintln(w, p)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("writing paths: %w", err)
	}
	return nil
}
