package build

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/mkext4fs/mkext4fs/internal/e2fs"
	"github.com/mkext4fs/mkext4fs/pkg/closure"
	"github.com/mkext4fs/mkext4fs/pkg/plan"
)

// Report is the JSON build report (--report). Its field order is fixed and
// its maps are written with sorted keys, so two reports diff cleanly.
type Report struct {
	Tool      string   `json:"tool"`
	Version   string   `json:"version"`
	E2fsprogs string   `json:"e2fsprogs"`
	Label     string   `json:"label"`
	UUID      string   `json:"uuid"`
	HashSeed  string   `json:"hash_seed"`
	Features  []string `json:"features"`
	Timestamp int64    `json:"timestamp"`
	Compress  string   `json:"compress,omitempty"`
	Blocks    struct {
		Size      int64 `json:"size"`
		Total     int64 `json:"total"`
		Used      int64 `json:"used"`
		Free      int64 `json:"free"`
		Reserved  int64 `json:"reserved"`
		Planned   int64 `json:"planned_content"`
		Headroom  int64 `json:"headroom"`
		PerGroup  int64 `json:"per_group"`
		ImageSize int64 `json:"image_bytes"`
	} `json:"blocks"`
	Inodes struct {
		Total int64 `json:"total"`
		Used  int64 `json:"used"`
		Free  int64 `json:"free"`
	} `json:"inodes"`
	// Bulk counts the files the tool copied into the image itself, and
	// their bytes (the rest went through debugfs' write).
	Bulk struct {
		Files int64 `json:"files"`
		Bytes int64 `json:"bytes"`
	} `json:"bulk"`
	StorePaths []StorePathReport `json:"store_paths"`
	// Seconds per phase: plan (closure, walk, script), size, mkfs,
	// populate (first debugfs), merge (large directories' entries read
	// from their chunk directories and written into their own blocks; a
	// second debugfs), hash_wait (hashing runs during populate: what was
	// left of it), registration, checksums (tune2fs, e2fsck -fyD), check
	// (e2fsck -fn, plan checks), compress, total.
	Seconds map[string]float64 `json:"seconds"`

	last time.Time
}

// StorePathReport is what one store path takes in the image.
type StorePathReport struct {
	Path    string `json:"path"`
	Inodes  int64  `json:"inodes"`
	Blocks  int64  `json:"blocks"`
	NarSize uint64 `json:"nar_size"`
	NarHash string `json:"nar_hash"`
}

func newReport(o *Options) *Report {
	return &Report{Tool: "mkext4fs", Version: o.ToolVersion, Label: o.Label, UUID: o.UUID, HashSeed: o.UUID,
		Timestamp: o.Timestamp, Compress: o.Compress, Seconds: map[string]float64{}, last: time.Now()}
}

// phaser returns a function that records the time since the last phase.
func (r *Report) phaser() func(name string) {
	return func(name string) {
		now := time.Now()
		r.Seconds[name] = round(now.Sub(r.last).Seconds())
		r.last = now
	}
}

func (r *Report) fill(sb *e2fs.Superblock, c *closure.Closure, t *plan.Tree, need plan.Need, geo *geometry) {
	r.Features = sb.Features()
	r.Blocks.Size = int64(sb.BlockSize)
	r.Blocks.Total = int64(sb.BlocksCount)
	r.Blocks.Used = int64(sb.UsedBlocks())
	r.Blocks.Free = int64(sb.FreeBlocks)
	r.Blocks.Reserved = int64(sb.ReservedBlocks)
	r.Blocks.Planned = need.Blocks()
	r.Blocks.Headroom = sb.UnreservedFree()
	r.Blocks.PerGroup = int64(sb.BlocksPerGroup)
	r.Blocks.ImageSize = int64(sb.BlocksCount) * int64(sb.BlockSize)
	r.Inodes.Total = int64(sb.InodesCount)
	r.Inodes.Used = int64(sb.UsedInodes())
	r.Inodes.Free = int64(sb.FreeInodes)
	byPath := map[string]*closure.Path{}
	for i := range c.Paths {
		byPath[c.Paths[i].Path] = &c.Paths[i]
	}
	for _, n := range t.Store.Children() {
		nd := t.PathNeed(n, plan.Geometry{MetadataCsum: sb.Has("metadata_csum")})
		sp := StorePathReport{Path: n.StorePath(), Inodes: nd.Inodes, Blocks: nd.Blocks()}
		if p := byPath[sp.Path]; p != nil {
			sp.NarSize, sp.NarHash = p.NarSize, p.NarHash
		}
		r.StorePaths = append(r.StorePaths, sp)
	}
}

// WriteFile writes the report as indented JSON.
func (r *Report) WriteFile(name string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(name, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
