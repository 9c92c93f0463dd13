package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mkext4fs/mkext4fs/internal/cli"
	"github.com/mkext4fs/mkext4fs/internal/nixtest"
	"github.com/mkext4fs/mkext4fs/internal/testutil"
	"github.com/mkext4fs/mkext4fs/pkg/closure"
)

// The disk is laid out as nixpkgs' sd-image.nix lays it out, but for the
// firmware partition's size: nixpkgs' 30 MiB is too small for FAT32 (it
// needs at least 65,525 clusters; mkfs.vfat then makes FAT16 in nixpkgs,
// mtools refuses a forced FAT32 that small), so it is 40 MiB here.
const (
	sectorSize     = 512
	firmwareOffset = 8 << 20  // sdImage.firmwarePartitionOffset, 8 MiB
	firmwareSize   = 40 << 20 // sdImage.firmwareSize is 30 MiB
	firmwareID     = "0x2178694e"
	growBy         = 64 << 20 // what the "SD card" has beyond the image
	bootTimeout    = 90 * time.Second
)

// The modules the guest loads, with their dependencies from modules.dep.
// ext4 asks the crypto API for crc32c when it mounts a metadata_csum
// filesystem; that is no modules.dep dependency, so load it explicitly (the
// generic one: crc32c-intel needs SSE4.2, which qemu's default CPU lacks).
var guestModules = []string{"virtio_pci", "virtio_blk", "crc32c_generic", "ext4"}

const extlinuxConf = `# Generated file, all changes will be lost on nixos-rebuild!
DEFAULT nixos-default
MENU TITLE ------------------------------------------------------------
TIMEOUT 50

LABEL nixos-default
  MENU LABEL NixOS - Default
  LINUX ../nixos/bzImage
  INITRD ../nixos/initrd
  APPEND init=/nix/store/init console=ttyS0
`

type phaseTimer struct {
	t     *testing.T
	start time.Time
	last  time.Time
}

func (p *phaseTimer) done(name string) {
	now := time.Now()
	p.t.Logf("%-32s %5.1f s", name, now.Sub(p.last).Seconds())
	p.last = now
}

// TestBootSDImage builds an image of a closure made by real Nix, puts it in
// an SD-card-shaped disk, boots Debian's kernel on it in qemu with KVM, lets
// the guest check the store and grow partition and filesystem to the end of
// the enlarged disk, and then checks the result from the host: partition
// table, filesystem size, e2fsck, and nix-store --load-db/--verify on a
// mount of it.
func TestBootSDImage(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a virtual machine")
	}
	pt := &phaseTimer{t: t, start: time.Now(), last: time.Now()}
	testutil.RequireRoot(t)
	requireKVM(t)
	requireLoop(t)
	tool := map[string]string{}
	for _, name := range []string{"qemu-system-x86_64", "sfdisk", "mkfs.vfat", "mcopy", "mtype", "busybox", "resize2fs",
		"e2fsck", "dumpe2fs", "partx", "ldd", "mount", "umount", "faketime", "debugfs", "mkfs.ext4"} {
		tool[name] = testutil.RequireTool(t, name)
	}
	kernel, err := FindKernel()
	if err != nil {
		testutil.Unavailable(t, "%v", err)
	}
	n := nixtest.New(t)
	fx := nixtest.BuildFixture(t, n)
	pt.done("nix fixture")

	work := t.TempDir()
	filesDir := filepath.Join(work, "files")
	writeFile(t, filepath.Join(filesDir, "boot/extlinux/extlinux.conf"), extlinuxConf, 0o644)
	rootImg := filepath.Join(work, "nixos-root.ext4")
	runMkext4fs(t, append([]string{"build", "--output", rootImg, "--files", filesDir}, fx.TextGraphs...)...)
	runMkext4fs(t, append([]string{"verify", "--files", filesDir, rootImg}, fx.TextGraphs...)...)
	pt.done("build and verify the image")

	c, err := closure.Load(fx.TextGraphs, closure.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hash(context.Background(), closure.HashOptions{}); err != nil {
		t.Fatal(err)
	}
	var reg bytes.Buffer
	if err := c.WriteRegistration(&reg); err != nil {
		t.Fatal(err)
	}

	disk := filepath.Join(work, "sd.img")
	rootStart := assembleDisk(t, tool, disk, rootImg)
	rootSize := fileSize(t, rootImg)
	if err := os.Truncate(disk, rootStart+rootSize+growBy); err != nil {
		t.Fatal(err)
	}
	pt.done("assemble the disk")

	probes := guestProbes(t, fx, filesDir)
	initrd := filepath.Join(work, "initrd.cpio")
	buildInitramfs(t, tool, kernel, initrd, initScript(fx, probes))
	pt.done("build the initramfs")

	console := boot(t, tool["qemu-system-x86_64"], kernel, initrd, disk)
	pt.done("boot and first-boot growth")
	got := markers(console)
	t.Logf("guest's report:\n%s", e2eLines(console))
	checkConsole(t, console, got, fx, probes, reg.Bytes())

	// From the host: the partition reaches the end of the disk, the
	// filesystem fills the partition and is clean, and the firmware
	// partition is intact.
	diskSize := fileSize(t, disk)
	parts := partitions(t, tool["sfdisk"], disk)
	if len(parts) != 2 {
		t.Fatalf("partitions after boot: %+v", parts)
	}
	p2 := parts[1]
	if p2.Start*sectorSize != rootStart || (p2.Start+p2.Size)*sectorSize != diskSize {
		t.Errorf("partition 2 after boot: start %d, %d sectors; want start %d and the end at the disk's end (%d sectors)",
			p2.Start, p2.Size, rootStart/sectorSize, diskSize/sectorSize)
	}
	if want := fmt.Sprintf("%d %d", rootSize/sectorSize, p2.Size); got["E2E-PART"] != want {
		t.Errorf("guest saw partition 2 grow %q, want %q (sectors before and after)", got["E2E-PART"], want)
	}
	grown := filepath.Join(work, "grown.ext4")
	extract(t, disk, grown, p2.Start*sectorSize, p2.Size*sectorSize)
	blocks, blockSize, label := superblock(t, tool["dumpe2fs"], grown)
	fsBytes, partBytes := blocks*blockSize, p2.Size*sectorSize
	if fsBytes <= rootSize || fsBytes > partBytes || partBytes-fsBytes >= blockSize {
		t.Errorf("filesystem of %d bytes (%d blocks of %d) in a partition of %d bytes; the image had %d: it does not fill the partition",
			fsBytes, blocks, blockSize, partBytes, rootSize)
	}
	if label != "NIXOS_SD" {
		t.Errorf("label after boot %q, want NIXOS_SD", label)
	}
	if want := fmt.Sprintf("The filesystem on /dev/vda2 is now %d (%dk) blocks long.", blocks, blockSize/1024); got["E2E-RESIZE"] != want {
		t.Errorf("guest's resize2fs said %q, want %q", got["E2E-RESIZE"], want)
	}
	// statfs counts blocks without the filesystem's overhead: it must grow
	// by what was added, less the new groups' metadata.
	var before, after int64
	if _, err := fmt.Sscanf(got["E2E-STATFS"], "%d %d", &before, &after); err != nil || (after-before)*blockSize < (fsBytes-rootSize)*9/10 {
		t.Errorf("guest's statfs blocks before and after resize2fs: %q; want growth by about %d blocks", got["E2E-STATFS"], (fsBytes-rootSize)/blockSize)
	}
	if out, err := exec.Command(tool["e2fsck"], "-fn", grown).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn of the grown filesystem: %v\n%s", err, out)
	}
	if out, err := exec.Command(tool["mtype"], "-i", fmt.Sprintf("%s@@%d", disk, firmwareOffset), "::config.txt").Output(); err != nil || string(out) != firmwareConfig {
		t.Errorf("firmware partition's config.txt: %q, %v; want %q", out, err, firmwareConfig)
	}
	pt.done("host checks of the disk")

	checkWithNix(t, n, tool, grown, fx, c)
	pt.done("nix-store on a mount")
	t.Logf("%-32s %5.1f s", "total", time.Since(pt.start).Seconds())
}

func requireKVM(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		testutil.Unavailable(t, "KVM not available: %v", err)
		return
	}
	f.Close()
}

func requireLoop(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		testutil.Unavailable(t, "loop devices not available: %v", err)
	}
}

func writeFile(t *testing.T, p, content string, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func run(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// runMkext4fs runs the command line in-process, as main would.
func runMkext4fs(t *testing.T, args ...string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := cli.Run(context.Background(), cli.Env{Args: args, Stdout: &stdout, Stderr: &stderr, Version: "e2e"})
	if code := cli.ExitCode(err, &stderr); code != 0 {
		t.Fatalf("mkext4fs %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout.String(), stderr.String())
	}
	t.Logf("mkext4fs %s:\n%s%s", args[0], stderr.String(), stdout.String())
}

const firmwareConfig = "# firmware partition of the end-to-end test\nkernel=u-boot.bin\n"

// assembleDisk writes an SD-card image the way sd-image.nix does: an MBR
// with a FAT32 firmware partition at 8 MiB and the root filesystem right
// after it, marked bootable, ending at the end of the disk. It returns the
// byte offset of the root partition.
func assembleDisk(t *testing.T, tool map[string]string, disk, rootImg string) int64 {
	t.Helper()
	rootSize := fileSize(t, rootImg)
	if rootSize%sectorSize != 0 {
		t.Fatalf("root image of %d bytes is not a whole number of sectors", rootSize)
	}
	rootStart := int64(firmwareOffset + firmwareSize)
	f, err := os.Create(disk)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(rootStart + rootSize); err != nil {
		t.Fatal(err)
	}
	f.Close()
	run(t, fmt.Sprintf("label: dos\nlabel-id: %s\nstart=%dM, size=%dM, type=b\nstart=%dM, type=83, bootable\n",
		firmwareID, firmwareOffset>>20, firmwareSize>>20, rootStart>>20), tool["sfdisk"], disk)

	parts := partitions(t, tool["sfdisk"], disk)
	if len(parts) != 2 || parts[0].Start*sectorSize != firmwareOffset || parts[0].Size*sectorSize != firmwareSize ||
		parts[1].Start*sectorSize != rootStart || parts[1].Size*sectorSize != rootSize {
		t.Fatalf("sfdisk made %+v", parts)
	}

	fw := filepath.Join(filepath.Dir(disk), "firmware.vfat")
	if err := os.WriteFile(fw, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(fw, firmwareSize); err != nil {
		t.Fatal(err)
	}
	run(t, "", tool["mkfs.vfat"], "--invariant", "-F", "32", "-i", strings.TrimPrefix(firmwareID, "0x"), "-n", "FIRMWARE", fw)
	cfg := filepath.Join(filepath.Dir(disk), "config.txt")
	writeFile(t, cfg, firmwareConfig, 0o644)
	run(t, "", tool["mcopy"], "-p", "-m", "-i", fw, cfg, "::config.txt")

	place(t, disk, fw, firmwareOffset)
	place(t, disk, rootImg, rootStart)
	return rootStart
}

// place copies a file into the disk image at an offset.
func place(t *testing.T, disk, src string, off int64) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(io.NewOffsetWriter(out, off), in); err != nil {
		t.Fatal(err)
	}
}

// extract copies a byte range of the disk into its own file.
func extract(t *testing.T, disk, dst string, off, n int64) {
	t.Helper()
	in, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, io.NewSectionReader(in, off, n)); err != nil {
		t.Fatal(err)
	}
}

type partition struct {
	Start, Size int64
	Type        string
	Bootable    bool
}

// partitions reads the partition table with sfdisk --json.
func partitions(t *testing.T, sfdisk, disk string) []partition {
	t.Helper()
	var doc struct {
		PartitionTable struct {
			Label      string      `json:"label"`
			Partitions []partition `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal([]byte(run(t, "", sfdisk, "--json", disk)), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.PartitionTable.Label != "dos" {
		t.Fatalf("%s: partition table %q, want dos", disk, doc.PartitionTable.Label)
	}
	return doc.PartitionTable.Partitions
}

// superblock returns the block count, block size and label of a filesystem.
func superblock(t *testing.T, dumpe2fs, img string) (int64, int64, string) {
	t.Helper()
	out := run(t, "", dumpe2fs, "-h", img)
	field := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `:\s*(.*)$`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("dumpe2fs -h %s: no %q", img, name)
		}
		return strings.TrimSpace(m[1])
	}
	blocks, err1 := strconv.ParseInt(field("Block count"), 10, 64)
	bs, err2 := strconv.ParseInt(field("Block size"), 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("dumpe2fs -h %s: %v %v", img, err1, err2)
	}
	return blocks, bs, field("Filesystem volume name")
}

// probe is one path the guest reports on, with what the host expects.
type probe struct {
	path string // in the image
	want string // the E2E-ENTRY line the guest must print
}

// guestProbes picks store entries of every kind, the --files content, the
// store directory and the registration, with the expectations derived on
// the host from the source files.
func guestProbes(t *testing.T, fx *nixtest.Fixture, filesDir string) []probe {
	t.Helper()
	lib := fx.Paths["lib"]
	storeEntries := []string{
		fx.Paths["exe"], fx.Paths["data"], fx.Paths["link"], lib, fx.Paths["app"] + "/bin/app",
		lib + "/bin/run", lib + "/bin/relative-link", lib + "/name with space", lib + "/big",
		lib + "/share/dir with space/file", lib + "/emptydir", lib + "/empty", lib + "/self-reference",
	}
	var ps []probe
	for _, p := range storeEntries {
		ps = append(ps, probe{p, expectEntry(t, p, p, 0, 0)})
	}
	ps = append(ps, probe{"/boot/extlinux/extlinux.conf",
		expectEntry(t, "/boot/extlinux/extlinux.conf", filepath.Join(filesDir, "boot/extlinux/extlinux.conf"), 0, 0)})
	ps = append(ps,
		probe{"/nix/store", "E2E-ENTRY 1775 0 30000 dir - :: /nix/store"},
		probe{"/nix", "E2E-ENTRY 755 0 0 dir - :: /nix"},
	)
	return ps
}

// expectEntry is the line the guest's probe function prints for an entry
// like the host file src.
func expectEntry(t *testing.T, p, src string, uid, gid int) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(src, &st); err != nil {
		t.Fatal(err)
	}
	perm := strconv.FormatUint(uint64(st.Mode&0o7777), 8)
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("E2E-ENTRY %s %d %d link %s :: %s", perm, uid, gid, target, p)
	case syscall.S_IFDIR:
		return fmt.Sprintf("E2E-ENTRY %s %d %d dir - :: %s", perm, uid, gid, p)
	default:
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		return fmt.Sprintf("E2E-ENTRY %s %d %d file %s :: %s", perm, uid, gid, hex.EncodeToString(sum[:]), p)
	}
}

// shquote quotes a string for the shell.
func shquote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// initScript is the guest's /init: busybox sh with the host's expectations
// turned into probes. Every result is a line on the console starting with
// E2E; failures print E2E-FAIL and power off.
func initScript(fx *nixtest.Fixture, probes []probe) string {
	var b strings.Builder
	b.WriteString(`#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/bin:/usr/sbin:/usr/bin LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
ln -s /proc/mounts /etc/mtab
fail() { echo "E2E-FAIL $*"; sync; poweroff -f; }
for m in $(cat /lib/modules/order); do
	insmod /lib/modules/$m || fail "insmod $m"
done
echo "E2E-MODULES $(wc -l < /proc/modules)"

i=0
until dev=$(findfs LABEL=NIXOS_SD 2>/dev/null); do
	i=$((i+1)); [ $i -gt 100 ] && fail "no filesystem labelled NIXOS_SD: $(cat /proc/partitions)"
	sleep 0.1
done
name=${dev#/dev/}
part=$(cat /sys/class/block/$name/partition) || fail "$dev is not a partition"
disk=/dev/$(basename $(dirname $(readlink -f /sys/class/block/$name)))
echo "E2E-ROOT $dev $disk $part"
mount -t ext4 -o rw "$dev" /mnt || fail "mount $dev"
echo "E2E-MOUNT $(grep " /mnt " /proc/mounts | cut -d' ' -f3,4 | cut -d, -f1)"

probe() {
	p="/mnt$1"
	if [ -L "$p" ]; then echo "E2E-ENTRY $(stat -c '%a %u %g' "$p") link $(readlink "$p") :: $1"
	elif [ -d "$p" ]; then echo "E2E-ENTRY $(stat -c '%a %u %g' "$p") dir - :: $1"
	elif [ -f "$p" ]; then echo "E2E-ENTRY $(stat -c '%a %u %g' "$p") file $(sha256sum < "$p" | cut -d' ' -f1) :: $1"
	else echo "E2E-ENTRY missing :: $1"; fi
}
`)
	for _, p := range probes {
		fmt.Fprintf(&b, "probe %s\n", shquote(p.path))
	}
	fmt.Fprintf(&b, `echo "E2E-REG $(sha256sum < /mnt/nix-path-registration | cut -d' ' -f1) $(wc -l < /mnt/nix-path-registration)"
# The store works where it belongs: programs run from /nix/store.
mkdir -p /nix && mount --bind /mnt/nix /nix || fail "bind /nix"
echo "E2E-RUN-APP $(%s)"
echo "E2E-RUN-EXE $(%s)"
umount /nix || fail "umount /nix"

# First boot: grow the partition to the end of the disk, then the mounted
# filesystem to the end of the partition.
before=$(cat /sys/class/block/$name/size)
echo ,+ | sfdisk -N$part --no-reread $disk > /tmp/sfdisk.log 2>&1 || { cat /tmp/sfdisk.log; fail "sfdisk"; }
partx -u --nr $part $disk || fail "partx -u"
echo "E2E-PART $before $(cat /sys/class/block/$name/size)"
statfs=$(stat -f -c %%b /mnt)
resize2fs $dev > /tmp/resize2fs.log 2>&1 || { cat /tmp/resize2fs.log; fail "resize2fs"; }
echo "E2E-RESIZE $(grep ' is now ' /tmp/resize2fs.log)"
echo "E2E-STATFS $statfs $(stat -f -c %%b /mnt)"
umount /mnt || fail "umount /mnt"
sync
echo "E2E-DONE"
poweroff -f
`, shquote(fx.Paths["app"]+"/bin/app"), shquote(fx.Paths["exe"]))
	return b.String()
}

// buildInitramfs writes the guest's initramfs: static busybox, the kernel
// modules in load order, sfdisk, partx and resize2fs with their libraries,
// and the init script.
func buildInitramfs(t *testing.T, tool map[string]string, k *Kernel, dst, init string) {
	t.Helper()
	r := NewInitramfs()
	for _, d := range []string{"dev", "proc", "sys", "mnt", "tmp", "etc", "bin"} {
		r.AddDir(d)
	}
	r.AddCharDev("dev/console", 5, 1)
	if out, err := exec.Command(tool["ldd"], tool["busybox"]).CombinedOutput(); err == nil {
		t.Fatalf("%s is dynamically linked (Debian: apt-get install busybox-static):\n%s", tool["busybox"], out)
	}
	if err := r.AddHostFile("bin/busybox", tool["busybox"]); err != nil {
		t.Fatal(err)
	}
	r.AddSymlink("bin/sh", "busybox")
	r.AddFile("init", 0o755, []byte(init))

	order, err := k.ModuleOrder(guestModules...)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range order {
		data, err := k.ModuleContent(m)
		if err != nil {
			t.Fatal(err)
		}
		name := moduleName(m) + ".ko"
		r.AddFile("lib/modules/"+name, 0o644, data)
		names = append(names, name)
	}
	r.AddFile("lib/modules/order", 0o644, []byte(strings.Join(names, "\n")+"\n"))
	t.Logf("guest modules, in load order: %s", strings.Join(names, " "))

	for _, prog := range []string{tool["sfdisk"], tool["partx"], tool["resize2fs"]} {
		if err := r.AddProgram(prog); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	if err := r.Write(bw); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
}

// boot runs the guest to its end and returns what it printed on ttyS0.
//
// It boots with KVM. Where KVM is present but unusably slow (nested
// virtualization on a loaded host: the kernel took minutes to decompress
// on the machine this was written on, while qemu's own TCG boots it in
// seconds), a guest that shows no sign of life from init within
// kvmLiveness is stopped and booted again with TCG; the test logs it.
func boot(t *testing.T, qemu string, k *Kernel, initrd, disk string) string {
	t.Helper()
	console, alive, err := runGuest(qemu, k, initrd, disk, "kvm", kvmLiveness)
	if err == nil {
		return console
	}
	if alive {
		t.Fatalf("%v\nconsole:\n%s", err, console)
	}
	t.Logf("KVM guest did not reach init within %v (%v); booting again with TCG", kvmLiveness, err)
	console, _, err = runGuest(qemu, k, initrd, disk, "tcg", bootTimeout)
	if err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, console)
	}
	return console
}

// kvmLiveness is how long a KVM guest may take to print its first line from
// init.
const kvmLiveness = 20 * time.Second

// runGuest boots once with the accelerator and waits for qemu to exit (the
// guest powers off). alive reports whether init printed anything; until it
// does, liveness bounds the wait, then bootTimeout does.
func runGuest(qemu string, k *Kernel, initrd, disk, accel string, liveness time.Duration) (console string, alive bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu,
		"-accel", accel, "-m", "512", "-smp", "1",
		"-nodefaults", "-no-reboot", "-display", "none", "-serial", "stdio",
		"-kernel", k.Image, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 quiet",
		"-drive", "file="+disk+",format=raw,if=virtio")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", false, err
	}
	if err := cmd.Start(); err != nil {
		return "", false, fmt.Errorf("qemu: %w", err)
	}
	var buf bytes.Buffer
	lines := make(chan struct{}, 1)
	copied := make(chan error, 1)
	go func() {
		r := bufio.NewReader(out)
		for {
			line, err := r.ReadString('\n')
			buf.WriteString(line)
			if strings.HasPrefix(strings.TrimSpace(line), "E2E") {
				select {
				case lines <- struct{}{}:
				default:
				}
			}
			if err != nil {
				copied <- nil
				return
			}
		}
	}()
	timer := time.NewTimer(liveness)
	defer timer.Stop()
	select {
	case <-lines:
		alive = true
	case <-copied:
		copied <- nil
	case <-timer.C:
		cancel()
	}
	<-copied
	werr := cmd.Wait()
	console = strings.ReplaceAll(buf.String(), "\r\n", "\n")
	if strings.Contains(console, "E2E") {
		alive = true
	}
	switch {
	case ctx.Err() != nil && !alive:
		return console, false, fmt.Errorf("no output from init within %v", liveness)
	case ctx.Err() != nil:
		return console, true, fmt.Errorf("the guest did not power off within %v", bootTimeout)
	case werr != nil:
		return console, alive, fmt.Errorf("qemu -accel %s: %v\n%s", accel, werr, stderr.String())
	}
	return console, alive, nil
}

// e2eLines returns the console lines the init script printed.
func e2eLines(console string) string {
	var b strings.Builder
	for _, line := range strings.Split(console, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "E2E") {
			b.WriteString(strings.TrimSpace(line) + "\n")
		}
	}
	return b.String()
}

// markers returns the guest's E2E lines by their first word (the last one
// of each kind); E2E-ENTRY lines are keyed by their full text.
func markers(console string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(console, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "E2E") {
			continue
		}
		key, rest, _ := strings.Cut(line, " ")
		if key == "E2E-ENTRY" {
			m[line] = "seen"
			continue
		}
		m[key] = rest
	}
	return m
}

func checkConsole(t *testing.T, console string, got map[string]string, fx *nixtest.Fixture, probes []probe, reg []byte) {
	t.Helper()
	if fail, ok := got["E2E-FAIL"]; ok {
		t.Fatalf("the guest failed: %s\nconsole:\n%s", fail, console)
	}
	if _, ok := got["E2E-DONE"]; !ok {
		t.Fatalf("the guest did not finish; console:\n%s", console)
	}
	sum := sha256.Sum256(reg)
	checks := []struct{ key, want string }{
		{"E2E-MOUNT", "ext4 rw"},
		{"E2E-REG", fmt.Sprintf("%s %d", hex.EncodeToString(sum[:]), bytes.Count(reg, []byte("\n")))},
		{"E2E-RUN-APP", "lib"},
		{"E2E-RUN-EXE", "exe"},
	}
	for _, c := range checks {
		if got[c.key] != c.want {
			t.Errorf("%s %q, want %q", c.key, got[c.key], c.want)
		}
	}
	if !regexp.MustCompile(`^/dev/vda2 /dev/vda 2$`).MatchString(got["E2E-ROOT"]) {
		t.Errorf("E2E-ROOT %q: want the label to lead to partition 2 of the virtio disk", got["E2E-ROOT"])
	}
	for _, p := range probes {
		if got[p.want] == "" {
			var entries []string
			for k := range got {
				if strings.HasPrefix(k, "E2E-ENTRY") && strings.HasSuffix(k, ":: "+p.path) {
					entries = append(entries, k)
				}
			}
			sort.Strings(entries)
			t.Errorf("guest's report on %s: %q, want %q", p.path, entries, p.want)
		}
	}
	if t.Failed() {
		t.Logf("console:\n%s", console)
	}
}

// checkWithNix mounts a copy of the grown filesystem read-only with a
// writable overlay (Nix needs to write its database), loads the
// registration into that store and lets Nix re-hash every path and list the
// closure.
func checkWithNix(t *testing.T, n *nixtest.Nix, tool map[string]string, img string, fx *nixtest.Fixture, c *closure.Closure) {
	t.Helper()
	dir := t.TempDir()
	lower, upper, work, merged := filepath.Join(dir, "lower"), filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	for _, d := range []string{lower, upper, work, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mount(t, tool, "-o", "loop,ro", "-t", "ext4", img, lower)
	mount(t, tool, "-t", "overlay", "overlay", "-o", "lowerdir="+lower+",upperdir="+upper+",workdir="+work, merged)

	regFile, err := os.Open(filepath.Join(merged, "nix-path-registration"))
	if err != nil {
		t.Fatal(err)
	}
	defer regFile.Close()
	if _, err := n.Output(regFile, "nix-store", "--store", merged, "--load-db"); err != nil {
		t.Fatal(err)
	}
	cmd := n.Command(context.Background(), "nix-store", "--store", merged, "--verify", "--check-contents")
	out, err := cmd.CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("was modified")) || bytes.Contains(out, []byte("error")) {
		t.Errorf("nix-store --verify --check-contents on the image: %v\n%s", err, out)
	}
	gotReq := strings.Fields(n.Run(t, "nix-store", append([]string{"--store", merged, "-q", "--requisites"}, fx.Roots...)...))
	sort.Strings(gotReq)
	hostReq := n.Requisites(t, fx.Roots...)
	if strings.Join(gotReq, "\n") != strings.Join(hostReq, "\n") {
		t.Errorf("nix-store -q --requisites in the image:\n%s\non the host:\n%s", strings.Join(gotReq, "\n"), strings.Join(hostReq, "\n"))
	}
	if strings.Join(gotReq, "\n") != strings.Join(c.PathNames(), "\n") {
		t.Errorf("nix-store -q --requisites in the image:\n%s\nthe graphs' closure:\n%s", strings.Join(gotReq, "\n"), strings.Join(c.PathNames(), "\n"))
	}
}

// mount mounts and arranges for the unmount at the end of the test.
func mount(t *testing.T, tool map[string]string, args ...string) {
	t.Helper()
	run(t, "", tool["mount"], args...)
	target := args[len(args)-1]
	t.Cleanup(func() {
		if out, err := exec.Command(tool["umount"], target).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", target, err, out)
			_ = exec.Command(tool["umount"], "-l", target).Run()
		}
	})
}
