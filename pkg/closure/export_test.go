package closure

import (
	"bytes"
	"context"
)

// EncodeNAR returns the NAR of the tree at fsPath, as the hasher hashes it.
func EncodeNAR(fsPath string) ([]byte, error) {
	var buf bytes.Buffer
	err := newNarHasher().encode(context.Background(), &buf, fsPath)
	return buf.Bytes(), err
}
