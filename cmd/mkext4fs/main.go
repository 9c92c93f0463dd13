// Command mkext4fs builds the ext4 root filesystem of NixOS SD-card images
// from the closure Nix exports with exportReferencesGraph.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mkext4fs/mkext4fs/internal/cli"
)

// version is set at link time: -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Run(ctx, cli.Env{
		Args:    os.Args[1:],
		Stdin:   os.Stdin,
		Stdout:  os.Stdout,
		Stderr:  os.Stderr,
		Version: version,
	})
	stop()
	os.Exit(cli.ExitCode(err, os.Stderr))
}
