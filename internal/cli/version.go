package cli

import (
	"context"
	"fmt"
)

func init() {
	register("version", "print the version", runVersion)
}

func runVersion(_ context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "version", "", "Prints the version of mkext4fs.")
	rest, err := parseFlags(env, fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("version takes no arguments")
	}
	_, err = fmt.Fprintf(env.Stdout, "mkext4fs %s\n", env.Version)
	return err
}
