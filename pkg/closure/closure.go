package closure

import (
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"sort"
)

// DefaultStoreDir is the store directory used when Options.StoreDir is empty.
const DefaultStoreDir = "/nix/store"

// Options say how graph files are read.
type Options struct {
	// StoreDir is the directory every store path must sit directly under;
	// empty means DefaultStoreDir.
	StoreDir string
	// AttrsKey picks the one top-level key of a structured (JSON) graph to
	// read; empty reads every list of store path objects in the file. Text
	// graphs ignore it.
	AttrsKey string
}

// Validate reports options that cannot work, such as a relative StoreDir.
func (o Options) Validate() error {
	_, err := o.storeDir()
	return err
}

func (o Options) storeDir() (string, error) {
	d := o.StoreDir
	if d == "" {
		return DefaultStoreDir, nil
	}
	if !path.IsAbs(d) || path.Clean(d) != d || d == "/" {
		return "", fmt.Errorf("store directory %q must be an absolute, clean path other than /", d)
	}
	return d, nil
}

// Path is one store path of a closure.
type Path struct {
	// Path is the absolute store path, e.g. /nix/store/<hash>-name.
	Path string
	// NarHash is "sha256:<nix-base32>" of the path's NAR serialization, or
	// empty when the graph did not carry it and Hash has not run.
	NarHash string
	// NarSize is the length of the NAR serialization; 0 when unknown.
	NarSize uint64
	// References are the store paths this one refers to (itself included
	// when it does), sorted and without duplicates.
	References []string
}

// HasNar reports whether the NAR hash and size are known.
func (p *Path) HasNar() bool { return p.NarHash != "" }

// Closure is a set of store paths closed under references.
type Closure struct {
	// StoreDir is the store directory the paths sit under.
	StoreDir string
	// Paths are sorted bytewise by Path, each path once.
	Paths []Path
}

// PathNames returns the store paths, sorted.
func (c *Closure) PathNames() []string {
	names := make([]string, len(c.Paths))
	for i := range c.Paths {
		names[i] = c.Paths[i].Path
	}
	return names
}

// NarBytes returns the sum of the known NAR sizes.
func (c *Closure) NarBytes() uint64 {
	var n uint64
	for i := range c.Paths {
		n += c.Paths[i].NarSize
	}
	return n
}

// record is a parsed store path with the place it came from, for messages.
type record struct {
	Path
	where string // "file:line"
}

// Load reads the graph files, unions them and checks the result: valid store
// paths directly under the store directory, every reference in the closure,
// no path listed twice in two different ways. Errors name the file and line.
func Load(files []string, opts Options) (*Closure, error) {
	storeDir, err := opts.storeDir()
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, errors.New("no graph files given")
	}
	u := newUnion()
	for _, name := range files {
		recs, err := parseFile(name, storeDir, opts)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			if err := u.add(r); err != nil {
				return nil, err
			}
		}
	}
	return u.closure(storeDir)
}

func parseFile(name, storeDir string, opts Options) ([]record, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("reading graph: %w", err)
	}
	return parseBytes(data, name, storeDir, opts)
}

// union merges records, rejecting a path listed twice in two different ways.
type union struct {
	byPath map[string]*record
}

func newUnion() *union { return &union{byPath: map[string]*record{}} }

func (u *union) add(r record) error {
	old, ok := u.byPath[r.Path.Path]
	if !ok {
		u.byPath[r.Path.Path] = &r
		return nil
	}
	if !slices.Equal(old.References, r.References) {
		return fmt.Errorf("%s: %s is listed again with different references than at %s (%d vs %d references)",
			r.where, r.Path.Path, old.where, len(r.References), len(old.References))
	}
	switch {
	case r.NarHash == "":
	case old.NarHash == "":
		old.NarHash, old.NarSize = r.NarHash, r.NarSize
	case old.NarHash != r.NarHash || old.NarSize != r.NarSize:
		return fmt.Errorf("%s: %s is listed again with a different narHash/narSize than at %s (%s %d vs %s %d)",
			r.where, r.Path.Path, old.where, r.NarHash, r.NarSize, old.NarHash, old.NarSize)
	}
	return nil
}

func (u *union) sorted() []*record {
	recs := make([]*record, 0, len(u.byPath))
	for _, r := range u.byPath {
		recs = append(recs, r)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Path.Path < recs[j].Path.Path })
	return recs
}

// closure checks that the union is closed under references and returns it.
func (u *union) closure(storeDir string) (*Closure, error) {
	recs := u.sorted()
	c := &Closure{StoreDir: storeDir, Paths: make([]Path, len(recs))}
	for i, r := range recs {
		for _, ref := range r.References {
			if _, ok := u.byPath[ref]; !ok {
				return nil, fmt.Errorf("%s: %s references %s, which is not in the closure", r.where, r.Path.Path, ref)
			}
		}
		c.Paths[i] = r.Path
	}
	return c, nil
}
