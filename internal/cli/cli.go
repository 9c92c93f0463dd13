// Package cli implements the mkext4fs command line: one function per
// subcommand, each with its own flag set, all reachable in-process through
// Run so that tests need no subprocess.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Env is what a run of the program sees of the outside world.
type Env struct {
	Args    []string
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	Version string
}

// UsageError marks a command line that cannot be run; it exits with 2.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// errHelp is returned after --help printed the usage: exit 0.
var errHelp = errors.New("help printed")

type command struct {
	summary string
	run     func(ctx context.Context, env *Env, args []string) error
}

// commands is filled by the init functions of the subcommand files.
var commands = map[string]command{}

func register(name, summary string, run func(ctx context.Context, env *Env, args []string) error) {
	commands[name] = command{summary: summary, run: run}
}

// Run executes one invocation. It never panics: a bug becomes an error that
// asks for a report.
func Run(ctx context.Context, env Env) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error (please report it at https://github.com/mkext4fs/mkext4fs/issues): %v", r)
		}
	}()
	if len(env.Args) == 0 {
		printUsage(env.Stderr)
		return usagef("no subcommand given")
	}
	name, args := env.Args[0], env.Args[1:]
	switch name {
	case "-h", "-help", "--help", "help":
		printUsage(env.Stdout)
		return nil
	case "-version", "--version":
		name = "version"
	}
	c, ok := commands[name]
	if !ok {
		printUsage(env.Stderr)
		return usagef("unknown subcommand %q", name)
	}
	err = c.run(ctx, &env, args)
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

func printUsage(w io.Writer) {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("usage: mkext4fs SUBCOMMAND [flags] [args]\n\nSubcommands:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %-13s %s\n", n, commands[n].summary)
	}
	b.WriteString("\nRun 'mkext4fs SUBCOMMAND --help' for the flags of one.\n")
	io.WriteString(w, b.String())
}

// newFlagSet makes a flag set that reports errors instead of exiting.
func newFlagSet(env *Env, name, argsUsage, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "usage: mkext4fs %s [flags] %s\n\n%s\n", name, argsUsage, summary)
		var hasFlags bool
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintf(out, "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args; --help prints the usage on stdout and yields
// errHelp. Flags may follow positional arguments.
func parseFlags(env *Env, fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		fs.SetOutput(io.Discard)
		err := fs.Parse(args)
		fs.SetOutput(env.Stderr)
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(env.Stdout)
			fs.Usage()
			return nil, errHelp
		}
		if err != nil {
			return nil, usagef("%s: %v", fs.Name(), err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		// flag stops at "--" (and drops it) or at the first non-flag.
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// ExitCode maps the result of Run to the process exit status and prints the
// one line a failure deserves.
func ExitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "mkext4fs: %s\n", oneLine.Replace(ue.Msg))
		return 2
	}
	fmt.Fprintf(stderr, "mkext4fs: %s\n", oneLine.Replace(err.Error()))
	return 1
}

// oneLine keeps a message on one line whatever file names it quotes: a
// store may hold names with line breaks.
var oneLine = strings.NewReplacer("\n", `\n`, "\r", `\r`)
