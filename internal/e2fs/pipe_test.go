package e2fs

import (
	"bytes"
	"io"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOutputPipe: everything written comes through, in order, then EOF;
// the pipe is enlarged where the kernel allows.
func TestOutputPipe(t *testing.T) {
	r, w, err := outputPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if size, err := unix.FcntlInt(uintptr(r.fd), unix.F_GETPIPE_SZ, 0); err != nil || (unix.Geteuid() == 0 && size < outputPipeSize) {
		t.Errorf("pipe size %d (%v), want %d", size, err, outputPipeSize)
	}
	var want bytes.Buffer
	go func() {
		defer w.Close()
		for i := 0; i < 20000; i++ {
			line := []byte("debugfs: write /src \"name with spaces\"\n")
			line[len(line)-3] = byte('a' + i%26)
			if _, err := w.Write(line); err != nil {
				return
			}
		}
	}()
	for i := 0; i < 20000; i++ {
		line := []byte("debugfs: write /src \"name with spaces\"\n")
		line[len(line)-3] = byte('a' + i%26)
		want.Write(line)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("read %d bytes, want %d (or different bytes)", len(got), want.Len())
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}
