package closure

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
)

// WriteRegistration writes the closure in the format nix-store --load-db
// reads: per path, in order, the path, its NAR hash, its NAR size, an empty
// deriver line, the number of references and the references. It fails
// before writing anything if a path's NAR hash or size is still unknown.
func (c *Closure) WriteRegistration(w io.Writer) error {
	for i := range c.Paths {
		if p := &c.Paths[i]; p.NarHash == "" || p.NarSize == 0 {
			return fmt.Errorf("%s: NAR hash or size unknown: hash the closure first", p.Path)
		}
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	for i := range c.Paths {
		p := &c.Paths[i]
		bw.WriteString(p.Path)
		bw.WriteByte('\n')
		bw.WriteString(p.NarHash)
		bw.WriteByte('\n')
		bw.WriteString(strconv.FormatUint(p.NarSize, 10))
		bw.WriteString("\n\n")
		bw.WriteString(strconv.Itoa(len(p.References)))
		bw.WriteByte('\n')
		for _, ref := range p.References {
			bw.WriteString(ref)
			bw.WriteByte('\n')
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing registration: %w", err)
	}
	return nil
}
