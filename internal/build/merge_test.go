package build

import (
	"encoding/binary"
	"math/rand"
	"reflect"
	"strings"
	"testing"

	"github.com/mkext4fs/mkext4fs/pkg/plan"
)

// TestLayoutDir: blocks laid out by layoutDir parse back to the same
// entries in the same order, each block's records reach its end, and no
// entry could have gone into the block before its own.
func TestLayoutDir(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for round := 0; round < 50; round++ {
		var entries []dirent
		for i := 0; i < 1+rng.Intn(600); i++ {
			name := make([]byte, 1+rng.Intn(255))
			for k := range name {
				name[k] = byte(1 + rng.Intn(255))
				if name[k] == '/' {
					name[k] = 'x'
				}
			}
			entries = append(entries, dirent{ino: uint32(12 + rng.Intn(1<<20)), ftype: []uint8{1, 2, 7}[rng.Intn(3)], name: string(name)})
		}
		b := layoutDir(entries)
		if len(b) == 0 || len(b)%plan.BlockSize != 0 {
			t.Fatalf("%d bytes of blocks", len(b))
		}
		var got []dirent
		var used []int // bytes of records before the last, per block
		for off := 0; off < len(b); off += plan.BlockSize {
			block := b[off : off+plan.BlockSize]
			es, err := parseDirBlock(block)
			if err != nil {
				t.Fatalf("block %d: %v", off/plan.BlockSize, err)
			}
			if len(es) == 0 {
				t.Fatalf("block %d is empty", off/plan.BlockSize)
			}
			n := 0
			for _, e := range es {
				n += int(plan.RecLen(len(e.name)))
			}
			used = append(used, n)
			got = append(got, es...)
		}
		if !reflect.DeepEqual(got, entries) {
			t.Fatalf("round %d: %d entries laid out, %d parsed back, or in another order", round, len(entries), len(got))
		}
		// Greedy: the first entry of each block did not fit the one before.
		k := 0
		for i, n := range used[:len(used)-1] {
			k += countIn(b[i*plan.BlockSize : (i+1)*plan.BlockSize])
			if next := int(plan.RecLen(len(entries[k].name))); n+next <= plan.BlockSize {
				t.Fatalf("block %d holds %d bytes and left out an entry of %d", i, n, next)
			}
		}
	}
}

func countIn(block []byte) int {
	es, _ := parseDirBlock(block)
	return len(es)
}

// TestParseDirBlockRejects: records that break the format are errors, not
// entries.
func TestParseDirBlockRejects(t *testing.T) {
	good := layoutDir([]dirent{{ino: 12, ftype: 1, name: "a"}, {ino: 13, ftype: 7, name: strings.Repeat("b", 40)}})
	if _, err := parseDirBlock(good); err != nil {
		t.Fatalf("a good block: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(b []byte)
	}{
		{"record length under 8", func(b []byte) { binary.LittleEndian.PutUint16(b[4:], 4) }},
		{"record length not a multiple of 4", func(b []byte) { binary.LittleEndian.PutUint16(b[4:], 14) }},
		{"record past the block", func(b []byte) { binary.LittleEndian.PutUint16(b[12+4:], plan.BlockSize) }},
		{"name longer than its record", func(b []byte) { b[6] = 200 }},
		{"empty name", func(b []byte) { b[6] = 0 }},
		{"last record short of the end", func(b []byte) { binary.LittleEndian.PutUint16(b[12+4:], 48) }},
	} {
		b := append([]byte(nil), good...)
		tc.edit(b)
		if es, err := parseDirBlock(b); err == nil {
			t.Errorf("%s: parsed as %+v", tc.name, es)
		}
	}
}
