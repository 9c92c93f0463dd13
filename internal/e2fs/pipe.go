package e2fs

import (
	"errors"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A debugfs run prints a line or two for every command, each with a
// write(2) of its own (it makes stdout unbuffered). Read through a pipe in
// Go's poller, every one of those writes wakes a reader thread: in a
// virtual machine that cost more CPU than debugfs spent on the commands.
// The output pipe is therefore an ordinary blocking pipe, as large as the
// kernel allows, and its reader naps between short reads, so that the
// lines pile up and come in few large reads without a wake-up each.
const (
	outputPipeSize = 1 << 20
	// A read shorter than this means the reader has caught up with
	// debugfs: it naps before the next. outputNap is short next to a
	// debugfs run and still reads faster than debugfs writes (64 KiB per
	// millisecond against a few MB/s).
	outputCaughtUp = 64 << 10
	outputNap      = time.Millisecond
)

// outputPipe makes the pipe a child's output goes to: w for the child,
// the reader for the parent, which must close both.
func outputPipe() (*batchReader, *os.File, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, os.NewSyscallError("pipe2", err)
	}
	// Best effort: an unprivileged process may be limited to less
	// (/proc/sys/fs/pipe-max-size); a smaller pipe only means more reads.
	_, _ = unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, outputPipeSize)
	return &batchReader{fd: fds[0]}, os.NewFile(uintptr(fds[1]), "|1"), nil
}

// batchReader reads a blocking pipe with plain system calls, napping
// after a read that found little.
type batchReader struct {
	fd int
	// caughtUp: the last read found little; the next naps first.
	caughtUp bool
}

func (b *batchReader) Read(p []byte) (int, error) {
	if b.caughtUp {
		time.Sleep(outputNap)
	}
	for {
		n, err := unix.Read(b.fd, p)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return 0, os.NewSyscallError("read", err)
		}
		if n == 0 {
			return 0, io.EOF
		}
		b.caughtUp = n < outputCaughtUp && n < len(p)
		return n, nil
	}
}

// Close closes the read end.
func (b *batchReader) Close() error {
	if b.fd < 0 {
		return nil
	}
	err := unix.Close(b.fd)
	b.fd = -1
	return err
}
