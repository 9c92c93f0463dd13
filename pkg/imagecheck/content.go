package imagecheck

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// ContentStream reads the contents of inodes out of an image with one
// read-only debugfs process running "cat <INO>" for each, in order,
// without copying anything to disk.
//
// debugfs writes a file's bytes raw between the echo of its command and the
// next command's echo; they need not end with a newline and may contain
// anything. The stream knows every inode's size (from "stat") and reads
// exactly that many bytes; the marker comment with a random nonce that
// precedes every command must follow right after, or the stream fails: an
// error message debugfs printed, or a file shorter than its size, shows up
// there.
type ContentStream struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc
	pr     *os.File
	br     *bufio.Reader
	marker string
	inos   []uint32
	sizes  []uint64
	next   int
	cur    *io.LimitedReader
	err    error
}

// StreamContents starts debugfs on the image for the inodes with the given
// sizes. Read them in order with Next; Close ends the process.
func StreamContents(ctx context.Context, image string, tools Tools, inos []uint32, sizes []uint64) (*ContentStream, error) {
	debugfs, err := tools.debugfs()
	if err != nil {
		return nil, err
	}
	if len(inos) != len(sizes) {
		return nil, fmt.Errorf("StreamContents: %d inodes but %d sizes", len(inos), len(sizes))
	}
	var nb [16]byte
	if _, err := rand.Read(nb[:]); err != nil {
		return nil, fmt.Errorf("making a nonce: %w", err)
	}
	s := &ContentStream{marker: "# mkext4fs-" + hex.EncodeToString(nb[:]) + " ", inos: inos, sizes: sizes}
	var script bytes.Buffer
	for i, ino := range inos {
		fmt.Fprintf(&script, "%s%d\ncat <%d>\n", s.marker, i, ino)
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.cmd = exec.CommandContext(ctx, debugfs, "-f", "-", image)
	s.cmd.Env = toolEnv()
	s.cmd.Stdin = &script
	pr, pw, err := os.Pipe()
	if err != nil {
		s.cancel()
		return nil, fmt.Errorf("running %s: %w", debugfs, err)
	}
	s.cmd.Stdout, s.cmd.Stderr = pw, pw
	if err := s.cmd.Start(); err != nil {
		s.cancel()
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("running %s: %w", debugfs, err)
	}
	pw.Close()
	s.pr = pr
	s.br = bufio.NewReaderSize(pr, 1<<20)
	return s, nil
}

// Next returns a reader of the next inode's contents: exactly its size in
// bytes, or an error when debugfs delivered something else. After an error
// the stream is unusable.
func (s *ContentStream) Next() (io.Reader, error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.next >= len(s.inos) {
		return nil, errors.New("no more inodes in the stream")
	}
	if err := s.finishCurrent(); err != nil {
		return nil, s.fail(err)
	}
	i := s.next
	want := s.marker + strconv.Itoa(i) + "\n"
	line, err := s.br.ReadString('\n')
	if i == 0 && err == nil && isBanner(strings.TrimSuffix(line, "\n")) {
		line, err = s.br.ReadString('\n')
	}
	if err != nil || line != want {
		return nil, s.fail(fmt.Errorf("%s", s.unexpected(line, i)))
	}
	echo := fmt.Sprintf("debugfs: cat <%d>\n", s.inos[i])
	if line, err = s.br.ReadString('\n'); err != nil || line != echo {
		return nil, s.fail(fmt.Errorf("%s", s.unexpected(line, i)))
	}
	s.next++
	s.cur = &io.LimitedReader{R: s.br, N: int64(s.sizes[i])}
	return &exactReader{lr: s.cur, ino: s.inos[i], size: s.sizes[i]}, nil
}

// exactReader reports a file that ends before its size as an error.
type exactReader struct {
	lr   *io.LimitedReader
	ino  uint32
	size uint64
}

func (r *exactReader) Read(p []byte) (int, error) {
	n, err := r.lr.Read(p)
	if errors.Is(err, io.EOF) && r.lr.N > 0 {
		return n, fmt.Errorf("inode %d: debugfs gave %d of its %d bytes", r.ino, r.size-uint64(r.lr.N), r.size)
	}
	return n, err
}

func (s *ContentStream) finishCurrent() error {
	if s.cur == nil {
		return nil
	}
	if _, err := io.Copy(io.Discard, s.cur); err != nil {
		return err
	}
	if s.cur.N > 0 {
		return fmt.Errorf("inode %d: debugfs gave %d of its %d bytes", s.inos[s.next-1], s.sizes[s.next-1]-uint64(s.cur.N), s.sizes[s.next-1])
	}
	s.cur = nil
	return nil
}

// unexpected describes what came instead of the marker of item i: an error
// message of debugfs about this inode or, when the previous file was
// shorter than its size, that one.
func (s *ContentStream) unexpected(line string, i int) string {
	rest, _ := s.br.Peek(400)
	text := line + string(rest)
	if j := strings.Index(text, s.marker); j >= 0 {
		text = text[:j]
	}
	what := fmt.Sprintf("inode %d", s.inos[i])
	if i > 0 {
		what = fmt.Sprintf("inode %d or the one before, %d,", s.inos[i], s.inos[i-1])
	}
	return fmt.Sprintf("reading the contents of %s debugfs printed %q", what, strings.TrimSpace(text))
}

func (s *ContentStream) fail(err error) error {
	s.err = err
	return err
}

// Close stops debugfs and reports a failure of the stream or of debugfs.
func (s *ContentStream) Close() error {
	if s.err == nil && s.next == len(s.inos) {
		if err := s.finishCurrent(); err != nil {
			s.err = err
		} else if rest, _ := io.ReadAll(io.LimitReader(s.br, 400)); len(strings.TrimSpace(string(rest))) > 0 {
			s.err = fmt.Errorf("debugfs printed after the last file: %q", strings.TrimSpace(string(rest)))
		}
	}
	complete := s.err == nil && s.next == len(s.inos)
	if !complete {
		// Stop debugfs rather than read what is left.
		s.cancel()
	}
	_, _ = io.Copy(io.Discard, s.pr)
	s.pr.Close()
	werr := s.cmd.Wait()
	s.cancel()
	if s.err != nil {
		return s.err
	}
	if complete && werr != nil {
		return fmt.Errorf("debugfs: %w", werr)
	}
	return nil
}
