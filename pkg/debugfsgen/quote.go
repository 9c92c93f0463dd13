package debugfsgen

import (
	"errors"
	"fmt"
	"strings"
)

// MaxLine is the longest line debugfs reads whole: fgets into an 8192-byte
// buffer keeps 8191 bytes, the newline included.
const MaxLine = 8190

// ErrUnquotable is returned for an argument debugfs cannot be given.
var ErrUnquotable = errors.New("cannot be passed to debugfs")

// Quote returns s as one debugfs argument. Strings made only of characters
// that the splitter passes through unchanged are left bare; everything
// else is put in double quotes with '"' doubled. A '\n' or '\r' would end
// the line and a NUL the C string: those are refused.
func Quote(s string) (string, error) {
	bare := s != ""
	for i := 0; i < len(s); i++ {
		switch byteClass[s[i]] {
		case bareByte:
		case refusedByte:
			return "", fmt.Errorf("%q: %w (it holds %q)", s, ErrUnquotable, s[i])
		default:
			bare = false
		}
	}
	if bare {
		return s, nil
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`, nil
}

// The classes of byteClass; the zero class needs quotes.
const (
	// bareByte needs no quotes: no blank, no quote, and nothing a line
	// could be mistaken for (a comment or a shell escape) even at its
	// start.
	bareByte = 1 + iota
	refusedByte
)

// byteClass sorts the bytes of an argument for Quote, in one pass.
var byteClass = func() (c [256]uint8) {
	for b := 'a'; b <= 'z'; b++ {
		c[b] = bareByte
	}
	for b := 'A'; b <= 'Z'; b++ {
		c[b] = bareByte
	}
	for b := '0'; b <= '9'; b++ {
		c[b] = bareByte
	}
	for _, b := range []byte("._+-/@=,:%~^") {
		c[b] = bareByte
	}
	c['\n'], c['\r'], c[0] = refusedByte, refusedByte, refusedByte
	return c
}()

// Split is a model of debugfs' line splitter (lib/ss/parse.c, ss_parse),
// for tests: it returns the arguments debugfs would see for line, or an
// error where debugfs would report unbalanced quotes.
func Split(line string) ([]string, error) {
	var (
		args   []string
		cur    []byte
		inTok  bool
		quoted bool
	)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted:
			if c == '"' {
				if i+1 < len(line) && line[i+1] == '"' {
					cur = append(cur, '"')
					i++
				} else {
					quoted = false
				}
			} else {
				cur = append(cur, c)
			}
		case c == ' ' || c == '\t':
			if inTok {
				args = append(args, string(cur))
				cur, inTok = cur[:0], false
			}
		case c == '"':
			inTok, quoted = true, true
		default:
			inTok = true
			cur = append(cur, c)
		}
	}
	if quoted {
		return nil, errors.New("unbalanced quotes in command line")
	}
	if inTok {
		args = append(args, string(cur))
	}
	return args, nil
}
