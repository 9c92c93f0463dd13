package build

import (
	"fmt"
	"os"
	"testing"

	"github.com/mkext4fs/mkext4fs/internal/nosync"
)

// TestMain serves the trampoline the program's main serves, so the builds
// here run the tools as the program does: without their fsyncs.
func TestMain(m *testing.M) {
	if handled, err := nosync.Serve(os.Args); handled {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(127)
	}
	os.Exit(m.Run())
}
