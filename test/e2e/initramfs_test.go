package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkext4fs/mkext4fs/internal/testutil"
)

// TestCpioReadByGNUCpio writes an archive and lets GNU cpio (or busybox
// cpio) list and extract it.
func TestCpioReadByGNUCpio(t *testing.T) {
	cpio, err := testutil.LookTool("cpio")
	if err != nil {
		bb := testutil.RequireTool(t, "busybox")
		cpio = bb
	}
	r := NewInitramfs()
	r.AddFile("init", 0o755, []byte("#!/bin/sh\necho hi\n"))
	r.AddFile("lib/modules/a.ko", 0o644, []byte("odd length."))
	r.AddFile("lib/modules/b.ko", 0o600, bytes.Repeat([]byte{0, 1, 2}, 1000))
	r.AddSymlink("bin/sh", "busybox")
	r.AddDir("proc")
	var buf bytes.Buffer
	if err := r.Write(&buf); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	args := []string{"-i", "-d", "--no-absolute-filenames"}
	if filepath.Base(cpio) == "busybox" {
		args = []string{"cpio", "-i", "-d"}
	}
	cmd := exec.Command(cpio, args...)
	cmd.Dir = dir
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", cpio, args, err, out)
	}
	for name, want := range map[string]string{
		"init":             "#!/bin/sh\necho hi\n",
		"lib/modules/a.ko": "odd length.",
		"lib/modules/b.ko": strings.Repeat("\x00\x01\x02", 1000),
	} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != want {
			t.Errorf("%s: %v, %d bytes; want %d bytes", name, err, len(got), len(want))
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "init")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("init: %v %v, want mode 0755", st, err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || target != "busybox" {
		t.Errorf("bin/sh: %q %v, want a symlink to busybox", target, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "proc")); err != nil || !st.IsDir() {
		t.Errorf("proc: %v %v, want a directory", st, err)
	}
}

func TestModuleOrder(t *testing.T) {
	dir := t.TempDir()
	dep := "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n" +
		"kernel/fs/jbd2/jbd2.ko:\nkernel/fs/mbcache.ko:\nkernel/lib/crc16.ko:\n" +
		"kernel/arch/x86/crypto/crc32c-intel.ko.xz:\n" +
		"kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n" +
		"kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\nkernel/drivers/virtio/virtio_ring.ko:\n"
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	k := &Kernel{Modules: dir}
	got, err := k.ModuleOrder("virtio_blk", "crc32c_intel", "ext4", "virtio")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko", "kernel/drivers/block/virtio_blk.ko",
		"kernel/arch/x86/crypto/crc32c-intel.ko.xz",
		"kernel/fs/jbd2/jbd2.ko", "kernel/fs/mbcache.ko", "kernel/lib/crc16.ko", "kernel/fs/ext4/ext4.ko",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if _, err := k.ModuleOrder("no_such_module"); err == nil {
		t.Error("an unknown module gave no error")
	}
}
