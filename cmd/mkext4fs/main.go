// Command mkext4fs builds the ext4 root filesystem of NixOS SD-card images
// from the closure Nix exports with exportReferencesGraph.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/mkext4fs/mkext4fs/internal/cli"
	"github.com/mkext4fs/mkext4fs/internal/nosync"
)

// version is set at link time: -ldflags "-X main.version=…".
var version = "dev"

func main() {
	// Started as the trampoline that runs an e2fsprogs tool without fsync.
	if handled, err := nosync.Serve(os.Args); handled {
		fmt.Fprintf(os.Stderr, "mkext4fs: %v\n", err)
		os.Exit(127)
	}
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
