package e2fs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Superblock holds the fields of an ext4 superblock the tool checks.
type Superblock struct {
	InodesCount, FreeInodes        uint32
	BlocksCount, ReservedBlocks    uint64
	FreeBlocks                     uint64
	BlockSize                      uint32
	BlocksPerGroup, InodesPerGroup uint32
	Compat, Incompat, ROCompat     uint32
	UUID                           [16]byte
	HashSeed                       [16]byte
	Label                          string
	MkfsTime, WriteTime, MountTime uint32
	LastCheck                      uint32
	Flags                          uint32
	State                          uint16
	DefHashVersion                 uint8
	FirstInode                     uint32
	InodeSize                      uint16
}

type featureBit struct {
	word int // 0 compat, 1 incompat, 2 ro_compat
	bit  uint32
}

// featureBits names the ext4 feature flags (lib/e2p/feature.c).
var featureBits = map[string]featureBit{
	"dir_prealloc": {0, 0x1}, "imagic_inodes": {0, 0x2}, "has_journal": {0, 0x4},
	"ext_attr": {0, 0x8}, "resize_inode": {0, 0x10}, "dir_index": {0, 0x20},
	"lazy_bg": {0, 0x40}, "snapshot_bitmap": {0, 0x100}, "sparse_super2": {0, 0x200},
	"fast_commit": {0, 0x400}, "stable_inodes": {0, 0x800}, "orphan_file": {0, 0x1000},

	"compression": {1, 0x1}, "filetype": {1, 0x2}, "needs_recovery": {1, 0x4},
	"journal_dev": {1, 0x8}, "meta_bg": {1, 0x10}, "extent": {1, 0x40},
	"64bit": {1, 0x80}, "mmp": {1, 0x100}, "flex_bg": {1, 0x200},
	"ea_inode": {1, 0x400}, "dirdata": {1, 0x1000}, "metadata_csum_seed": {1, 0x2000},
	"large_dir": {1, 0x4000}, "inline_data": {1, 0x8000}, "encrypt": {1, 0x10000},
	"casefold": {1, 0x20000},

	"sparse_super": {2, 0x1}, "large_file": {2, 0x2}, "huge_file": {2, 0x8},
	"uninit_bg": {2, 0x10}, "dir_nlink": {2, 0x20}, "extra_isize": {2, 0x40},
	"snapshot": {2, 0x80}, "quota": {2, 0x100}, "bigalloc": {2, 0x200},
	"metadata_csum": {2, 0x400}, "replica": {2, 0x800}, "read-only": {2, 0x1000},
	"project": {2, 0x2000}, "shared_blocks": {2, 0x4000}, "verity": {2, 0x8000},
	"orphan_present": {2, 0x10000},
}

// KnownFeature reports whether name is an ext4 feature this package knows.
func KnownFeature(name string) bool {
	_, ok := featureBits[name]
	return ok
}

// Features lists the features set in the superblock, sorted; unknown bits
// appear as FEATURE_C12 and the like, as e2fsprogs prints them.
func (s *Superblock) Features() []string {
	words := [3]uint32{s.Compat, s.Incompat, s.ROCompat}
	var out []string
	known := [3]uint32{}
	for name, fb := range featureBits {
		known[fb.word] |= fb.bit
		if words[fb.word]&fb.bit != 0 {
			out = append(out, name)
		}
	}
	for w, prefix := range []string{"C", "I", "R"} {
		for b := 0; b < 32; b++ {
			if bit := uint32(1) << b; words[w]&bit != 0 && known[w]&bit == 0 {
				out = append(out, fmt.Sprintf("FEATURE_%s%d", prefix, b))
			}
		}
	}
	sort.Strings(out)
	return out
}

// Has reports whether the feature is set.
func (s *Superblock) Has(feature string) bool {
	fb, ok := featureBits[feature]
	if !ok {
		return false
	}
	return [3]uint32{s.Compat, s.Incompat, s.ROCompat}[fb.word]&fb.bit != 0
}

// UnreservedFree is the free space, in blocks, that any user may take.
func (s *Superblock) UnreservedFree() int64 {
	return int64(s.FreeBlocks) - int64(s.ReservedBlocks)
}

// UsedBlocks is the number of blocks in use.
func (s *Superblock) UsedBlocks() uint64 { return s.BlocksCount - s.FreeBlocks }

// UsedInodes is the number of inodes in use.
func (s *Superblock) UsedInodes() uint32 { return s.InodesCount - s.FreeInodes }

// ReadSuperblock reads the primary superblock of an image.
func ReadSuperblock(image string) (*Superblock, error) {
	f, err := os.Open(image)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, 1024)
	if _, err := f.ReadAt(buf, 1024); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: too short for an ext4 filesystem", image)
		}
		return nil, fmt.Errorf("read superblock of %s: %w", image, err)
	}
	le := binary.LittleEndian
	if le.Uint16(buf[56:]) != 0xEF53 {
		return nil, fmt.Errorf("%s: no ext2/3/4 superblock (bad magic)", image)
	}
	s := &Superblock{
		InodesCount:    le.Uint32(buf[0:]),
		BlocksCount:    uint64(le.Uint32(buf[4:])),
		ReservedBlocks: uint64(le.Uint32(buf[8:])),
		FreeBlocks:     uint64(le.Uint32(buf[12:])),
		FreeInodes:     le.Uint32(buf[16:]),
		BlockSize:      1024 << le.Uint32(buf[24:]),
		BlocksPerGroup: le.Uint32(buf[32:]),
		InodesPerGroup: le.Uint32(buf[40:]),
		MountTime:      le.Uint32(buf[44:]),
		WriteTime:      le.Uint32(buf[48:]),
		State:          le.Uint16(buf[58:]),
		LastCheck:      le.Uint32(buf[64:]),
		FirstInode:     le.Uint32(buf[84:]),
		InodeSize:      le.Uint16(buf[88:]),
		Compat:         le.Uint32(buf[92:]),
		Incompat:       le.Uint32(buf[96:]),
		ROCompat:       le.Uint32(buf[100:]),
		DefHashVersion: buf[252],
		Flags:          le.Uint32(buf[352:]),
		MkfsTime:       le.Uint32(buf[264:]),
	}
	copy(s.UUID[:], buf[104:120])
	copy(s.HashSeed[:], buf[236:252])
	s.Label = strings.TrimRight(string(buf[120:136]), "\x00")
	if s.Incompat&featureBits["64bit"].bit != 0 {
		s.BlocksCount |= uint64(le.Uint32(buf[336:])) << 32
		s.ReservedBlocks |= uint64(le.Uint32(buf[340:])) << 32
		s.FreeBlocks |= uint64(le.Uint32(buf[344:])) << 32
	}
	return s, nil
}
