package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// order lists the path indices sorted by store path.
func (c *corpus) order() []int {
	idx := make([]int, len(c.paths))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return c.paths[idx[a]].base < c.paths[idx[b]].base })
	return idx
}

// closureSizes sums the NAR sizes over the closure of every path.
func (c *corpus) closureSizes() []int64 {
	sizes := make([]int64, len(c.paths))
	for i := range c.paths {
		seen := map[int]bool{i: true}
		stack := []int{i}
		for len(stack) > 0 {
			j := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			sizes[i] += c.paths[j].narSize
			for k := range c.paths[j].refs {
				if !seen[k] {
					seen[k] = true
					stack = append(stack, k)
				}
			}
		}
	}
	return sizes
}

func writeLines(path string, fn func(w *bufio.Writer)) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fn(w)
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

type attrsEntry struct {
	ClosureSize int64    `json:"closureSize,omitempty"`
	NarHash     string   `json:"narHash,omitempty"`
	NarSize     int64    `json:"narSize,omitempty"`
	Path        string   `json:"path"`
	References  []string `json:"references"`
}

// writeGraphs writes the closure in the forms Nix hands a builder, the
// registration, the store path list and a file for the image root.
func writeGraphs(c *corpus, out string, hashed bool) error {
	order := c.order()
	err := writeLines(filepath.Join(out, "closure"), func(w *bufio.Writer) {
		for _, i := range order {
			refs := c.sortedRefs(i)
			fmt.Fprintf(w, "/nix/store/%s\n\n%d\n", c.paths[i].base, len(refs))
			for _, r := range refs {
				fmt.Fprintln(w, r)
			}
		}
	})
	if err != nil {
		return err
	}
	err = writeLines(filepath.Join(out, "store-paths"), func(w *bufio.Writer) {
		for _, i := range order {
			fmt.Fprintf(w, "/nix/store/%s\n", c.paths[i].base)
		}
	})
	if err != nil {
		return err
	}

	var closureSizes []int64
	if hashed {
		closureSizes = c.closureSizes()
	}
	entries := []attrsEntry{}
	for _, i := range order {
		e := attrsEntry{Path: "/nix/store/" + c.paths[i].base, References: c.sortedRefs(i)}
		if e.References == nil {
			e.References = []string{}
		}
		if hashed {
			e.NarHash, e.NarSize, e.ClosureSize = c.paths[i].narHash, c.paths[i].narSize, closureSizes[i]
		}
		entries = append(entries, e)
	}
	attrs := map[string]any{
		"closure": entries,
		"name":    "ext4-fs.img",
		"outputs": map[string]string{"out": "/nix/store/" + strings.Repeat("0", 32) + "-ext4-fs.img"},
		"system":  "x86_64-linux",
	}
	data, err := json.Marshal(attrs)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, ".attrs.json"), append(data, '\n'), 0o644); err != nil {
		return err
	}

	if hashed {
		err = writeLines(filepath.Join(out, "registration"), func(w *bufio.Writer) {
			for _, i := range order {
				sp := c.paths[i]
				refs := c.sortedRefs(i)
				fmt.Fprintf(w, "/nix/store/%s\n%s\n%d\n\n%d\n", sp.base, sp.narHash, sp.narSize, len(refs))
				for _, r := range refs {
					fmt.Fprintln(w, r)
				}
			}
		})
		if err != nil {
			return err
		}
	}

	boot := filepath.Join(out, "files", "boot", "extlinux")
	if err := os.MkdirAll(boot, 0o755); err != nil {
		return err
	}
	sys := "/nix/store/" + c.paths[len(c.paths)-1].base
	conf := fmt.Sprintf("# Generated file, all changes will be lost on nixos-rebuild!\nDEFAULT nixos-default\nTIMEOUT 50\n\n"+
		"LABEL nixos-default\n  MENU LABEL NixOS - Default\n  LINUX ../nixos/kernel-Image\n  INITRD ../nixos/initrd\n"+
		"  APPEND init=%s/init loglevel=4\n", sys)
	return os.WriteFile(filepath.Join(boot, "extlinux.conf"), []byte(conf), 0o644)
}

// writeEnv records the counts as shell assignments for the benchmark script.
func writeEnv(c *corpus, out string, n counts, seed uint64, scale float64, mode string) error {
	var nar int64
	for _, p := range c.paths {
		nar += p.narSize
	}
	return writeLines(filepath.Join(out, "corpus.env"), func(w *bufio.Writer) {
		fmt.Fprintf(w, "mode=%s\nseed=%d\nscale=%g\n", mode, seed, scale)
		fmt.Fprintf(w, "paths=%d\nentries=%d\ninodes=%d\n", n.paths, n.entries, n.entries-n.hardlinks)
		fmt.Fprintf(w, "dirs=%d\nfiles=%d\nsymlinks=%d\nlong_symlinks=%d\nhardlinks=%d\n",
			n.dirs, n.files, n.symlinks, n.longSymlinks, n.hardlinks)
		fmt.Fprintf(w, "bytes=%d\nlargest=%d\nbiggest_dir=%d\nnar_bytes=%d\n", n.bytes, n.largest, n.biggestDir, nar)
	})
}
