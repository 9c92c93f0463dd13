package closure

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// errNoPaths is what a graph without a single record gives.
var errNoPaths = errors.New("no store paths: is this an exportReferencesGraph file?")

// Parse reads one graph file, in the text or the structured (JSON) form,
// which it tells apart by the content. name is used in messages. The paths
// come back sorted and without duplicates; whether the graph is closed is
// Load's business.
func Parse(r io.Reader, name string, opts Options) ([]Path, error) {
	storeDir, err := opts.storeDir()
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: reading graph: %w", name, err)
	}
	recs, err := parseBytes(data, name, storeDir, opts)
	if err != nil {
		return nil, err
	}
	u := newUnion()
	for _, r := range recs {
		if err := u.add(r); err != nil {
			return nil, err
		}
	}
	sorted := u.sorted()
	paths := make([]Path, len(sorted))
	for i, r := range sorted {
		paths[i] = r.Path
	}
	return paths, nil
}

func parseBytes(data []byte, name, storeDir string, opts Options) ([]record, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%s: %w", name, errNoPaths)
	}
	var (
		recs []record
		err  error
	)
	if trimmed[0] == '{' || trimmed[0] == '[' {
		recs, err = parseJSON(data, name, storeDir, opts.AttrsKey)
	} else {
		recs, err = parseText(data, name, storeDir)
	}
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("%s: %w", name, errNoPaths)
	}
	return recs, nil
}

// sortedRefs sorts and deduplicates references in place.
func sortedRefs(refs []string) []string {
	sort.Strings(refs)
	return slices.Compact(refs)
}

// parseText reads the classic exportReferencesGraph form: records of path,
// deriver, count and that many references, one item per line.
func parseText(data []byte, name, storeDir string) ([]record, error) {
	lines := strings.Split(string(data), "\n")
	// A final newline ends the last line; it does not start another.
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	var recs []record
	for i := 0; i < len(lines); {
		at := func(j int) string { return fmt.Sprintf("%s:%d", name, j+1) }
		p := lines[i]
		start := i
		if err := checkStorePath(storeDir, p); err != nil {
			return nil, fmt.Errorf("%s: %w", at(i), err)
		}
		i++
		if i >= len(lines) {
			return nil, fmt.Errorf("%s: truncated record for %s: the deriver line is missing", at(i), p)
		}
		if d := lines[i]; d != "" {
			if err := checkStorePath(storeDir, d); err != nil || !strings.HasSuffix(d, ".drv") {
				return nil, fmt.Errorf("%s: deriver of %s: %q is neither empty nor a .drv store path", at(i), p, d)
			}
		}
		i++
		if i >= len(lines) {
			return nil, fmt.Errorf("%s: truncated record for %s: the reference count is missing", at(i), p)
		}
		n, err := strconv.ParseInt(lines[i], 10, 64)
		switch {
		case err != nil && errors.Is(err, strconv.ErrRange):
			return nil, fmt.Errorf("%s: reference count %q of %s is out of range", at(i), lines[i], p)
		case err != nil:
			return nil, fmt.Errorf("%s: reference count %q of %s is not a number", at(i), lines[i], p)
		case n < 0:
			return nil, fmt.Errorf("%s: reference count %d of %s is negative", at(i), n, p)
		}
		i++
		if rest := int64(len(lines) - i); n > rest {
			return nil, fmt.Errorf("%s: %s has %d references but only %s", at(i-1), p, n, linesFollow(rest))
		}
		refs := make([]string, 0, n)
		for ; n > 0; n-- {
			if err := checkStorePath(storeDir, lines[i]); err != nil {
				return nil, fmt.Errorf("%s: reference of %s: %w", at(i), p, err)
			}
			refs = append(refs, lines[i])
			i++
		}
		recs = append(recs, record{Path: Path{Path: p, References: sortedRefs(refs)}, where: at(start)})
	}
	return recs, nil
}

func linesFollow(n int64) string {
	if n == 1 {
		return "1 line follows"
	}
	return fmt.Sprintf("%d lines follow", n)
}
