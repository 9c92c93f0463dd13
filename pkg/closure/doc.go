// Package closure reads the closure graphs Nix writes for exportReferencesGraph,
// computes or checks the NAR hashes of the store paths, and writes the
// registration that nix-store --load-db reads.
//
// # Graph files
//
// Nix writes a graph in one of two forms; Parse tells them apart by content.
//
// The text form (a derivation without __structuredAttrs) repeats one record per
// store path until the end of the file:
//
//	/nix/store/<hash>-<name>      the store path
//	                              the deriver: empty, or a /nix/store/<hash>-<name>.drv path
//	2                             the number of references
//	/nix/store/<hash>-<dep>       that many references, one per line
//	/nix/store/<hash>-<name>
//
// The structured form is the .attrs.json of a derivation with
// __structuredAttrs: a JSON object whose exportReferencesGraph keys hold lists
// of objects
//
//	{"path": "/nix/store/…", "narHash": "sha256:…", "narSize": 120,
//	 "references": ["/nix/store/…"], "closureSize": 120}
//
// Every other top-level value (the derivation's own attributes) is skipped,
// unless Options.AttrsKey names the one list to read. Unknown fields of a
// path object are ignored; narHash may be sha256:<nix-base32>,
// sha256:<base16> or SRI sha256-<base64> and is normalized to
// sha256:<nix-base32>.
//
// Load unions several graph files, sorts the paths bytewise and checks that
// every path is a valid store path directly under the store directory, that
// every reference is itself in the closure, and that a path listed twice is
// listed the same way.
//
// # NAR hashes
//
// Closure.Hash serializes each store path as a NAR (lstat only, symlinks are
// never followed, directory entries in bytewise order; an encoder of its own,
// held in tests to go-nix's NAR writer and to Nix) and hashes the stream with
// SHA-256, in parallel across store paths and without holding file contents
// in memory. It fills hashes the graph lacks and, on request,
// checks the ones it carries.
//
// # Registration
//
// Closure.WriteRegistration writes, per path in sorted order, what nixpkgs'
// closureInfo writes and nix-store --load-db reads:
//
//	/nix/store/<hash>-<name>
//	sha256:<nix-base32 NAR hash>
//	<NAR size>
//	                              (empty deriver)
//	<number of references>
//	<references, sorted, one per line>
package closure
