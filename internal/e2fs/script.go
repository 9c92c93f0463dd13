package e2fs

import (
	"bufio"
	"fmt"
	"io"
	"os"
)

// scriptSource gives the lines of a DebugfsScript to the two sides of a
// debugfs run: all of them in one go to its input, and one by one, by
// number, to the reader of its output, which asks only for the line
// being run and the one before it. A script in a file is read twice
// rather than held in memory.
type scriptSource struct {
	s     *DebugfsScript
	total int
	// file is the script file, read line by line into ring; read counts
	// the lines read, and err is the first failure.
	file *os.File
	r    *bufio.Reader
	ring [2]string
	read int
	err  error
}

func openScript(s *DebugfsScript) (*scriptSource, error) {
	src := &scriptSource{s: s, total: s.Len()}
	if s.File == "" {
		return src, nil
	}
	f, err := os.Open(s.File)
	if err != nil {
		return nil, fmt.Errorf("open the script: %w", err)
	}
	src.file, src.r = f, bufio.NewReaderSize(f, 256<<10)
	return src, nil
}

func (src *scriptSource) close() {
	if src.file != nil {
		src.file.Close()
	}
}

// line returns line i. From a file, it is "" for a line past its end (err
// says so) or read more than a line before the last one asked for.
func (src *scriptSource) line(i int) string {
	if i < len(src.s.Pre) {
		return src.s.Pre[i]
	}
	i -= len(src.s.Pre)
	if src.file == nil {
		return src.s.Lines[i]
	}
	for src.read <= i && src.err == nil {
		l, err := src.r.ReadString('\n')
		if err != nil {
			if err == io.EOF {
				err = fmt.Errorf("%s: %d lines, %d expected", src.s.File, src.read, src.s.FileLines)
			}
			src.err = err
			break
		}
		src.ring[src.read%2] = l[:len(l)-1]
		src.read++
	}
	if i >= src.read || i < src.read-2 {
		return ""
	}
	return src.ring[i%2]
}

// writeTo writes every line to w, each followed by a newline.
func (src *scriptSource) writeTo(w *bufio.Writer) error {
	if err := writeLines(w, src.s.Pre); err != nil {
		return err
	}
	if src.s.File == "" {
		return writeLines(w, src.s.Lines)
	}
	f, err := os.Open(src.s.File)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// writeLines writes lines to w, each followed by a newline.
func writeLines(w *bufio.Writer, lines []string) error {
	for _, l := range lines {
		w.WriteString(l)
		if err := w.WriteByte('\n'); err != nil {
			return err
		}
	}
	return nil
}
