package closure

import (
	"bufio"
	"bytes"
	"context"
)

// EncodeNAR returns the NAR of the tree at fsPath, as the hasher hashes it.
func EncodeNAR(fsPath string) ([]byte, error) {
	var buf bytes.Buffer
	h := newNarHasher()
	h.bw = bufio.NewWriter(&buf)
	e := &narEncoder{w: h.bw}
	if err := e.begin(); err != nil {
		return nil, err
	}
	if err := h.walk(context.Background(), e, fsPath); err != nil {
		return nil, err
	}
	if err := h.bw.Flush(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
