package build

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"

	"github.com/mkext4fs/mkext4fs/internal/e2fs"
	"github.com/mkext4fs/mkext4fs/pkg/plan"
)

// geometry is the size of the filesystem to make.
type geometry struct {
	Blocks, Inodes, BlocksPerGroup int64
	// EmptyUsed is the blocks an empty filesystem of this geometry uses.
	EmptyUsed int64
}

func (g *geometry) mkfsOptions(o *Options) e2fs.MkfsOptions {
	return e2fs.MkfsOptions{
		Blocks: g.Blocks, Inodes: g.Inodes, BlocksPerGroup: g.BlocksPerGroup,
		ReservedPercent: o.ReservedPercent, Label: o.Label, UUID: o.UUID,
	}
}

const (
	// firstInode: inodes 1-10 are reserved, 11 is lost+found.
	firstInode    = 11
	maxIPG        = plan.BlockSize * 8 // one inode bitmap block per group
	defaultBPG    = plan.BlockSize * 8
	minBlocks     = 4096 // below this mke2fs makes no journal
	maxIterations = 16
)

// wantedFree is the unreserved free space, in blocks, the empty filesystem
// must have: the content, plus the headroom or what the build holds for a
// while, whichever is more.
func wantedFree(o *Options, need plan.Need) int64 {
	headroom := (o.Headroom + plan.BlockSize - 1) / plan.BlockSize
	if need.PeakBlocks > headroom {
		headroom = need.PeakBlocks
	}
	return need.Blocks() + headroom
}

// wantedInodes is the inode count the filesystem needs: the content's,
// plus the free inodes asked for or those the build holds for a while,
// whichever is more.
func wantedInodes(o *Options, need plan.Need) int64 {
	return firstInode + need.Inodes + max(need.PeakInodes, o.ExtraInodes)
}

// layout picks the blocks per group: fewer than the default when the inodes
// would not fit in the groups of the default size.
func layout(blocks, inodes int64) geometry {
	g := geometry{Blocks: blocks, Inodes: inodes}
	groups := (blocks + defaultBPG - 1) / defaultBPG
	if need := (inodes + maxIPG - 1) / maxIPG; need > groups {
		g.BlocksPerGroup = (blocks / need) &^ 7
	}
	return g
}

// fitSize finds the smallest filesystem that holds the content with the
// free space asked for, by making empty filesystems of candidate sizes and
// reading their free counts: mke2fs itself says what its overhead is.
func fitSize(ctx context.Context, r *e2fs.Runner, work string, o *Options, need plan.Need) (*geometry, error) {
	want := wantedFree(o, need)
	inodes := wantedInodes(o, need)
	usable := 1 - o.ReservedPercent/100
	if usable <= 0.05 {
		return nil, fmt.Errorf("--reserved-percent %g leaves too little", o.ReservedPercent)
	}
	// First guess: the content, the inode tables, a journal and bitmaps.
	size := int64(float64(want)/usable) + inodes*256/plan.BlockSize + 1024 + want/64
	if size < minBlocks {
		size = minBlocks
	}
	trial := filepath.Join(work, "trial")
	var best *geometry
	// lo is the largest size known too small, best the smallest known to
	// fit; the free space is nearly linear in the size, with steps where
	// groups and the journal change, so Newton steps kept inside the
	// bracket converge in a few trials.
	lo := int64(0)
	trials := 0
	for ; trials < maxIterations; trials++ {
		g := layout(size, inodes)
		if err := os.Remove(trial); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		if err := createSparse(trial, size*plan.BlockSize); err != nil {
			return nil, err
		}
		mo := g.mkfsOptions(o)
		mo.Trial = true
		if err := r.Mkfs(ctx, trial, mo); err != nil {
			return nil, fmt.Errorf("sizing the image: %w", err)
		}
		sb, err := e2fs.ReadSuperblock(trial)
		if err != nil {
			return nil, err
		}
		surplus := sb.UnreservedFree() - want
		inodeSurplus := int64(sb.FreeInodes) - (inodes - firstInode)
		if r.Verbose != nil {
			fmt.Fprintf(r.Verbose, "size: %d blocks (%d per group): %d blocks, %d inodes to spare\n", size, g.BlocksPerGroup, surplus, inodeSurplus)
		}
		fits := surplus >= 0 && inodeSurplus >= 0
		g.EmptyUsed = int64(sb.UsedBlocks())
		if fits {
			if best == nil || g.Blocks < best.Blocks {
				gg := g
				best = &gg
			}
			if surplus <= 8+size/1000 {
				break
			}
		} else if size > lo {
			lo = size
		}
		step := int64(float64(surplus) / usable)
		switch {
		case !fits && step > -16:
			step = -16
		case fits && step == 0:
			step = 1
		}
		if inodeSurplus < 0 && step > -256 {
			step = -256 // more groups
		}
		next := size - step
		if best != nil && next >= best.Blocks {
			next = (lo + best.Blocks) / 2
		}
		if next <= lo {
			if best != nil {
				next = (lo + best.Blocks) / 2
			} else {
				next = lo + 16
			}
		}
		if next < minBlocks {
			next = minBlocks // mke2fs makes no journal below
		}
		if best != nil && best.Blocks-lo <= 1 || next == size {
			break
		}
		size = next
	}
	os.Remove(trial)
	if r.Verbose != nil {
		fmt.Fprintf(r.Verbose, "size: %d trials\n", trials+1)
	}
	if best == nil {
		return nil, fmt.Errorf("sizing the image: no size found that holds %d blocks and %d inodes", want, inodes)
	}
	return best, nil
}

// checkResult compares the finished filesystem with the plan.
func checkResult(sb *e2fs.Superblock, o *Options, need plan.Need) error {
	got := sb.Features()
	want := append([]string(nil), o.Features...)
	sort.Strings(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return fmt.Errorf("the image has features %v, not the %v asked for", got, want)
	}
	if used := int64(sb.UsedInodes()); used != firstInode+need.Inodes {
		return fmt.Errorf("the image uses %d inodes where the plan has %d: content was lost or added", used, firstInode+need.Inodes)
	}
	headroom := (o.Headroom + plan.BlockSize - 1) / plan.BlockSize
	if free := sb.UnreservedFree(); free < headroom {
		return fmt.Errorf("the image has %d free blocks where %d were planned; please report this", free, headroom)
	}
	if int64(sb.FreeInodes) < o.ExtraInodes {
		return fmt.Errorf("the image has %d free inodes where %d were asked for; please report this", sb.FreeInodes, o.ExtraInodes)
	}
	return nil
}

// checkContent compares the blocks the content takes with the plan, on
// the filesystem as made (before shrinkToFit): at least the data (the
// registration as written, not as bounded) and long symlinks, at most the
// planned bound.
func checkContent(sb *e2fs.Superblock, need plan.Need, geo *geometry, regBytes, regMax int64) error {
	content := int64(sb.UsedBlocks()) - geo.EmptyUsed
	regPlanned := (regMax + plan.BlockSize - 1) / plan.BlockSize
	regActual := (regBytes + plan.BlockSize - 1) / plan.BlockSize
	if low := need.DataBlocks - regPlanned + regActual + need.SymlinkBlocks; content < low {
		return fmt.Errorf("the image holds %d blocks of content where the files and symlinks alone take %d: content was lost", content, low)
	}
	if content > need.Blocks() {
		return fmt.Errorf("the image holds %d blocks of content, more than the %d planned; please report this", content, need.Blocks())
	}
	return nil
}

func isENOSPC(err error) bool {
	return errors.Is(err, syscall.ENOSPC)
}

// shrinkToFit gives back the space the build held only for a while: when
// staged directories needed more room while being built than the headroom
// had, or the plan's bounds were loose, the finished filesystem has more
// free space than asked for, and resize2fs takes the excess off its end.
// The caller checks the filesystem (e2fsck -fn) afterwards.
func shrinkToFit(ctx context.Context, r *e2fs.Runner, image string, sb *e2fs.Superblock, o *Options) (*e2fs.Superblock, error) {
	headroom := (o.Headroom + plan.BlockSize - 1) / plan.BlockSize
	usable := 1 - o.ReservedPercent/100
	for i := 0; i < 3; i++ {
		excess := sb.UnreservedFree() - headroom
		// Within a quarter of what the size may be off by, keep it.
		if excess <= (int64(sb.BlocksCount)/100+256)/4 {
			return sb, nil
		}
		blocks := int64(sb.BlocksCount) - int64(float64(excess)/usable) + 1
		// Keep enough groups for the free inodes asked for.
		used := int64(sb.UsedInodes())
		groups := (used + o.ExtraInodes + int64(sb.InodesPerGroup) - 1) / int64(sb.InodesPerGroup)
		if min := (groups-1)*int64(sb.BlocksPerGroup) + 1024; blocks < min {
			blocks = min
		}
		minimum, err := r.MinSize(ctx, image)
		if err != nil {
			return nil, err
		}
		if blocks < minimum {
			blocks = minimum
		}
		if blocks >= int64(sb.BlocksCount) {
			return sb, nil
		}
		if err := r.Shrink(ctx, image, blocks); err != nil {
			return nil, err
		}
		next, err := e2fs.ReadSuperblock(image)
		if err != nil {
			return nil, err
		}
		if next.UnreservedFree() < headroom || int64(next.FreeInodes) < o.ExtraInodes {
			return nil, fmt.Errorf("resize2fs left %d free blocks and %d free inodes, want %d and %d; please report this",
				next.UnreservedFree(), next.FreeInodes, headroom, o.ExtraInodes)
		}
		sb = next
	}
	return sb, nil
}
