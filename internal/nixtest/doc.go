// Package nixtest runs the real Nix for tests: builds with nix-build into the
// machine's store, queries with nix-store, and loads registrations into a
// throw-away store to let nix-store --verify --check-contents judge them.
//
// Nix runs in single-user mode as root, with a private configuration
// directory (NIX_CONF_DIR in t.TempDir()) whose nix.conf says
//
//	build-users-group =
//	sandbox = false
//	substituters =
//
// so that no build users, sandbox or network are needed. Without nix-build,
// nix-store or root the tests are skipped locally and fail in CI (see
// internal/testutil).
//
// Nix 2.8 sometimes reports a builder that exits right after writing its
// last output as "failed due to signal 9 (Killed)"; builders here end with
// "sleep 0.2 &" and Build retries once on exactly that message.
//
// Fixture builds fixture.nix: a few small store paths covering what a NAR
// and an image must get right (a dependency chain, symlinks, an executable,
// an empty file and directory, a file name with a space, names whose sort
// order differs from a naive one, a self-reference, a top-level file and a
// top-level symlink), and graphs of them in both exportReferencesGraph forms.
package nixtest
