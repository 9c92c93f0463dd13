package closure

import (
	"crypto/sha256"
	"fmt"
	"regexp"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixbase32"
	"github.com/nix-community/go-nix/pkg/nixhash"
	"github.com/nix-community/go-nix/pkg/storepath"
)

// maxNameLen is the longest name Nix accepts after the "<hash>-".
const maxNameLen = 211

var (
	hashLen = nixbase32.EncodedLen(storepath.PathHashSize)
	nameRe  = regexp.MustCompile(`^` + storepath.NameRe.String() + `$`)
)

// checkStorePath reports why p is not a store path directly under storeDir.
// The rules are go-nix's (nix-base32 hash, storepath.NameRe for the name,
// storepath.FromString); the separator, the leading dot and the name length
// are checked explicitly because FromString lets them pass, and the prefix
// because it knows only /nix/store.
func checkStorePath(storeDir, p string) error {
	base, ok := strings.CutPrefix(p, storeDir+"/")
	if !ok {
		return fmt.Errorf("invalid store path %q: not under the store directory %s", p, storeDir)
	}
	if strings.Contains(base, "/") {
		return fmt.Errorf("invalid store path %q: not directly under the store directory %s", p, storeDir)
	}
	if len(base) < hashLen+2 || base[hashLen] != '-' {
		return fmt.Errorf("invalid store path %q: expected %s/<%d-character hash>-<name>", p, storeDir, hashLen)
	}
	name := base[hashLen+1:]
	if err := nixbase32.ValidateString(base[:hashLen]); err != nil {
		return fmt.Errorf("invalid store path %q: hash part: %w", p, err)
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("invalid store path %q: name longer than %d characters", p, maxNameLen)
	}
	if !nameRe.MatchString(name) {
		return fmt.Errorf("invalid store path %q: name %q must not start with a dot or contain other characters than a-z A-Z 0-9 + - . _ ? =", p, name)
	}
	// The checks above say what is wrong in words; this is the rule of
	// record, should go-nix's ever be stricter.
	if _, err := storepath.FromString(base); err != nil {
		return fmt.Errorf("invalid store path %q: %w", p, err)
	}
	return nil
}

// normalizeNarHash parses a SHA-256 hash in any form Nix writes and returns
// it as sha256:<nix-base32>.
func normalizeNarHash(s string) (string, error) {
	if !strings.HasPrefix(s, "sha256:") && !strings.HasPrefix(s, "sha256-") {
		return "", fmt.Errorf("narHash %q: want sha256:<nix-base32>, sha256:<hex> or sha256-<base64>", s)
	}
	h, err := nixhash.ParseAny(s, nil)
	if err != nil {
		return "", fmt.Errorf("narHash %q: %w", s, err)
	}
	// nixhash accepts a base64 digest of any length.
	if n := len(h.Digest()); n != sha256.Size {
		return "", fmt.Errorf("narHash %q: %d bytes, want %d", s, n, sha256.Size)
	}
	return formatNarHash(h.Digest()), nil
}

func formatNarHash(digest []byte) string {
	return "sha256:" + nixbase32.EncodeToString(digest)
}
