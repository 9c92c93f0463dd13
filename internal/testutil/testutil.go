// Package testutil holds what the tests of several packages share: finding
// the real tools they run against.
package testutil

import (
	"os"
	"testing"

	"github.com/mkext4fs/mkext4fs/internal/e2fs"
)

// InCI reports whether the tests run in CI (CI=true), where a missing tool is
// a failure rather than a reason to skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// LookTool finds an executable on PATH or in the sbin directories that
// Debian keeps e2fsprogs in.
func LookTool(name string) (string, error) { return e2fs.LookTool(name) }

// RequireTool returns the path of a tool the test needs; without it the test
// is skipped locally and fails in CI.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := LookTool(name)
	if err != nil {
		Unavailable(t, "%s not available: %v", name, err)
	}
	return p
}

// RequireRoot skips (locally) or fails (in CI) when not running as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root")
	}
}

// Unavailable skips the test locally and fails it in CI.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}
