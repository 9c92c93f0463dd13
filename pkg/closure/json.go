package closure

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
)

// jsonValue is one top-level value of the object and where it starts.
type jsonValue struct {
	key string
	raw json.RawMessage
	off int64
}

// jsonObject is one element of a list of store path objects, by field name.
// Field names are matched exactly, as Nix writes them; fields not used here
// (closureSize, and what newer Nix adds) are ignored.
type jsonObject struct {
	fields map[string]json.RawMessage
	off    int64
}

// parseJSON reads a structured-attrs file: the lists of store path objects
// among its top-level values, or only the one named by attrsKey.
func parseJSON(data []byte, name, storeDir, attrsKey string) ([]record, error) {
	lineAt := newLineIndex(data).at
	values, err := topLevel(data, name, lineAt)
	if err != nil {
		return nil, err
	}
	var (
		recs  []record
		found bool
	)
	for _, v := range values {
		if attrsKey != "" && v.key != attrsKey {
			continue
		}
		found = true
		elems, ok := pathList(v.raw, v.off)
		if !ok {
			if attrsKey != "" {
				return nil, fmt.Errorf("%s:%d: %q is not a list of store path objects (path, narHash, narSize, references)",
					name, lineAt(v.off), attrsKey)
			}
			continue
		}
		for i, e := range elems {
			where := fmt.Sprintf("%s:%d", name, lineAt(e.off))
			r, err := jsonRecord(e.fields, storeDir)
			if err != nil {
				return nil, fmt.Errorf("%s: %s[%d]: %w", where, v.key, i, err)
			}
			r.where = where
			recs = append(recs, r)
		}
	}
	if attrsKey != "" && !found {
		return nil, fmt.Errorf("%s: no top-level key %q", name, attrsKey)
	}
	return recs, nil
}

// topLevel splits the top-level object into its values, keeping their
// offsets so that later messages can name a line.
func topLevel(data []byte, name string, lineAt func(int64) int) ([]jsonValue, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	fail := func(err error) error {
		off := dec.InputOffset()
		var se *json.SyntaxError
		if errors.As(err, &se) {
			off = se.Offset
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("%s:%d: invalid JSON: %w", name, lineAt(off), err)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, fail(err)
	}
	if tok != json.Delim('{') {
		return nil, fmt.Errorf("%s:%d: the top-level JSON value is not an object", name, lineAt(0))
	}
	var values []jsonValue
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fail(err)
		}
		key, _ := tok.(string)
		off := skipSeparators(data, dec.InputOffset())
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fail(err)
		}
		values = append(values, jsonValue{key: key, raw: raw, off: off})
	}
	if _, err := dec.Token(); err != nil {
		return nil, fail(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err == nil {
			err = errors.New("more data after the top-level object")
		}
		return nil, fail(err)
	}
	return values, nil
}

// pathList returns the elements of raw if it is a list of store path
// objects: a list of objects of which at least one has a "path". Other
// attributes of the derivation (strings, lists of strings, objects) are not.
func pathList(raw json.RawMessage, base int64) ([]jsonObject, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, false
	}
	var (
		elems   []jsonObject
		hasPath bool
	)
	for dec.More() {
		off := skipSeparators(raw, dec.InputOffset())
		var obj map[string]json.RawMessage
		if err := dec.Decode(&obj); err != nil || obj == nil {
			return nil, false
		}
		_, ok := obj["path"]
		hasPath = hasPath || ok
		elems = append(elems, jsonObject{fields: obj, off: base + off})
	}
	return elems, hasPath
}

func jsonRecord(fields map[string]json.RawMessage, storeDir string) (record, error) {
	present := func(k string) bool {
		v, ok := fields[k]
		return ok && string(v) != "null"
	}
	if !present("path") {
		return record{}, errors.New(`missing field "path"`)
	}
	var p string
	if err := json.Unmarshal(fields["path"], &p); err != nil {
		return record{}, fmt.Errorf(`field "path": %w`, err)
	}
	if err := checkStorePath(storeDir, p); err != nil {
		return record{}, err
	}
	if !present("references") {
		return record{}, fmt.Errorf(`%s: missing field "references"`, p)
	}
	var refs []string
	if err := json.Unmarshal(fields["references"], &refs); err != nil {
		return record{}, fmt.Errorf(`%s: field "references": %w`, p, err)
	}
	for _, ref := range refs {
		if err := checkStorePath(storeDir, ref); err != nil {
			return record{}, fmt.Errorf("%s: reference: %w", p, err)
		}
	}
	r := record{Path: Path{Path: p, References: sortedRefs(refs)}}
	switch hasHash, hasSize := present("narHash"), present("narSize"); {
	case hasHash && !hasSize:
		return record{}, fmt.Errorf(`%s: has "narHash" but no "narSize"`, p)
	case hasSize && !hasHash:
		return record{}, fmt.Errorf(`%s: has "narSize" but no "narHash"`, p)
	case !hasHash:
		return r, nil
	}
	var hash string
	if err := json.Unmarshal(fields["narHash"], &hash); err != nil {
		return record{}, fmt.Errorf(`%s: field "narHash": %w`, p, err)
	}
	h, err := normalizeNarHash(hash)
	if err != nil {
		return record{}, fmt.Errorf("%s: %w", p, err)
	}
	size, err := parseNarSize(fields["narSize"])
	if err != nil {
		return record{}, fmt.Errorf("%s: %w", p, err)
	}
	r.NarHash, r.NarSize = h, size
	return r, nil
}

// parseNarSize reads a JSON number of bytes. 0 is taken as unknown: stores
// registered by old tools hold NAR size 0, and Hash fills it in.
func parseNarSize(raw json.RawMessage) (uint64, error) {
	s := string(raw)
	if len(s) > 0 && s[0] == '-' {
		return 0, fmt.Errorf("narSize %s is negative", s)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("narSize %s is not a whole number of bytes", s)
	}
	return n, nil
}

// skipSeparators moves off past blanks and the , or : before a value.
func skipSeparators(data []byte, off int64) int64 {
	for off < int64(len(data)) {
		switch data[off] {
		case ' ', '\t', '\r', '\n', ',', ':':
			off++
		default:
			return off
		}
	}
	return off
}

// lineIndex maps byte offsets of a file to 1-based line numbers.
type lineIndex []int64 // offsets of the newlines

func newLineIndex(data []byte) lineIndex {
	var nl lineIndex
	for i, b := range data {
		if b == '\n' {
			nl = append(nl, int64(i))
		}
	}
	return nl
}

// at returns the line of byte offset off: one more than the number of
// newlines before it.
func (nl lineIndex) at(off int64) int {
	return sort.Search(len(nl), func(i int) bool { return nl[i] >= off }) + 1
}
