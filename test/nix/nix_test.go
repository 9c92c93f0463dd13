// Package nix tests the Nix expressions in nix/ with the real Nix and no
// nixpkgs: every .nix file parses; and, through the stand-in package set in
// stand-in.nix, the package builds and wraps, and make-ext4-fs.nix, called
// as nixpkgs' sd-image.nix calls a rootFilesystemCreator, makes images that
// nix/tests/check-image.nix accepts, while it rejects tampered copies; and
// default.nix, the flake's outputs, the overlay and the NixOS module build
// what they should (entry-points.nix).
package nix

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mkext4fs/mkext4fs/internal/nixtest"
	"github.com/mkext4fs/mkext4fs/internal/testutil"
)

// repoRoot is the top of the source tree, seen from this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// nixFiles lists the .nix files of the tree, vendor/ aside.
func nixFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	root := repoRoot(t)
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "vendor") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".nix") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"flake.nix", "default.nix", "nix/package.nix", "nix/make-ext4-fs.nix", "nix/sd-image.nix"} {
		if _, err := os.Stat(filepath.Join(root, want)); err != nil {
			t.Errorf("%s: %v", want, err)
		}
	}
	return files
}

func TestNixFilesParse(t *testing.T) {
	nixInstantiate := testutil.RequireTool(t, "nix-instantiate")
	for _, f := range nixFiles(t) {
		out, err := exec.Command(nixInstantiate, "--parse", f).CombinedOutput()
		if err != nil {
			t.Errorf("nix-instantiate --parse %s: %v\n%s", f, err, out)
		}
	}
}

// TestNixfmt checks the formatting where nixfmt is installed. Neither
// Debian nor npm packages it, so here it usually skips (also in CI); with
// the flake, `nix fmt` formats and `nix flake check` builds the rest.
func TestNixfmt(t *testing.T) {
	nixfmt, err := exec.LookPath("nixfmt")
	if err != nil {
		t.Skipf("nixfmt not available (no Debian or npm package provides it): %v", err)
	}
	args := append([]string{"--check"}, nixFiles(t)...)
	if out, err := exec.Command(nixfmt, args...).CombinedOutput(); err != nil {
		t.Errorf("nixfmt --check: %v\n%s", err, out)
	}
}

// standIn prepares an expression that imports test/nix/images.nix with the
// host's Go and its build cache, and returns the file holding it.
func standIn(t *testing.T) string {
	t.Helper()
	goBin := testutil.RequireTool(t, "go")
	cache, err := exec.Command(goBin, "env", "GOCACHE").Output()
	if err != nil {
		t.Fatalf("go env GOCACHE: %v", err)
	}
	expr := "import " + nixString(filepath.Join(repoRoot(t), "test", "nix", "images.nix")) +
		" { go = " + nixString(goBin) + "; goCache = " + nixString(strings.TrimSpace(string(cache))) + "; }\n"
	file := filepath.Join(t.TempDir(), "default.nix")
	if err := os.WriteFile(file, []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// nixString quotes s as a Nix string.
func nixString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `${`, `\${`)
	return `"` + r.Replace(s) + `"`
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMakeExt4FsWithStandIn(t *testing.T) {
	n := nixtest.New(t)
	zstd := testutil.RequireTool(t, "zstd")
	file := standIn(t)

	attrs := []string{
		"mkext4fs", "image", "imageZstd", "imageNoOverlay",
		"checkImage", "checkImageZstd", "tests.image", "tests.imageZstd",
	}
	out := n.Build(t, file, attrs...)
	if len(out) != len(attrs) {
		t.Fatalf("nix-build printed %d paths for %d attributes: %q", len(out), len(attrs), out)
	}
	got := map[string]string{}
	for i, a := range attrs {
		got[a] = out[i]
	}

	t.Run("output is the image file, named as nixpkgs names it", func(t *testing.T) {
		for attr, suffix := range map[string]string{"image": "-ext4-fs.img", "imageZstd": "-ext4-fs.img.zst"} {
			st, err := os.Lstat(got[attr])
			if err != nil {
				t.Fatal(err)
			}
			if !st.Mode().IsRegular() {
				t.Errorf("%s: %s is a %v, not a regular file", attr, got[attr], st.Mode().Type())
			}
			if !strings.HasSuffix(got[attr], suffix) {
				t.Errorf("%s: %s does not end in %s", attr, got[attr], suffix)
			}
		}
	})

	t.Run("compressed image is the plain image", func(t *testing.T) {
		plain := readFile(t, got["image"])
		cmd := exec.Command(zstd, "-d", "-c", "-q", got["imageZstd"])
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		unpacked, err := cmd.Output()
		if err != nil {
			t.Fatalf("zstd -d %s: %v: %s", got["imageZstd"], err, stderr.String())
		}
		if !bytes.Equal(plain, unpacked) {
			t.Errorf("zstd -d of %s (%d bytes) differs from %s (%d bytes)", got["imageZstd"], len(unpacked), got["image"], len(plain))
		}
		if len(readFile(t, got["imageZstd"])) >= len(plain)/4 {
			t.Errorf("%s is not much smaller than the image", got["imageZstd"])
		}
	})

	t.Run("without the overlay the same image", func(t *testing.T) {
		if !bytes.Equal(readFile(t, got["image"]), readFile(t, got["imageNoOverlay"])) {
			t.Errorf("%s and %s differ", got["image"], got["imageNoOverlay"])
		}
	})

	t.Run("checks report what they checked", func(t *testing.T) {
		for _, a := range []string{"checkImage", "checkImageZstd", "tests.image", "tests.imageZstd"} {
			report := string(readFile(t, got[a]))
			if !strings.Contains(report, "registration") || !strings.Contains(report, "mkext4fs verify") {
				t.Errorf("%s: report lacks checks:\n%s", a, report)
			}
		}
	})

	t.Run("wrapper finds e2fsprogs and libfaketime without PATH", func(t *testing.T) {
		pkg := got["mkext4fs"]
		fx := nixtest.BuildFixture(t, n)
		for _, tc := range []struct {
			name    string
			program string
			wantNix bool
		}{
			{"wrapped", filepath.Join(pkg, "bin", "mkext4fs"), true},
			// The control: the same binary without the wrapper must not
			// use tools from the store (it fails, or falls back on the
			// host's /usr/sbin and /usr/lib), or this test shows nothing.
			{"unwrapped", filepath.Join(pkg, "bin", ".mkext4fs-wrapped"), false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				img := filepath.Join(t.TempDir(), "img")
				cmd := exec.Command(tc.program, append([]string{"build", "-v", "--output", img}, fx.TextGraphs...)...)
				cmd.Env = []string{"PATH=/var/empty", "HOME=/var/empty"}
				msg, err := cmd.CombinedOutput()
				var tools string
				for _, l := range strings.Split(string(msg), "\n") {
					if strings.HasPrefix(l, "tools: ") {
						tools = l
					}
				}
				fromStore := tools != "" && strings.Count(tools, " /nix/store/") == 6
				switch {
				case tc.wantNix && (err != nil || !fromStore):
					t.Fatalf("%s build with PATH=/var/empty: %v; %q\n%s", tc.program, err, tools, lastLines(msg))
				case !tc.wantNix && err == nil && fromStore:
					t.Fatalf("%s build with PATH=/var/empty used store tools without the wrapper: %q", tc.program, tools)
				}
			})
		}
	})
}

func lastLines(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, "\n")
}

// TestCheckImageRejectsTampering builds check-image.nix on copies of the
// image with one thing changed: each build must fail, with the message of
// the check that caught it.
func TestCheckImageRejectsTampering(t *testing.T) {
	n := nixtest.New(t)
	file := standIn(t)
	tests := []struct {
		attr, want string
	}{
		{"mode", "it-lib: entries differ"},
		{"content", "it-lib: contents differ"},
		{"symlink", "it-lib: entries differ"},
		{"missing", "/nix/store in the image is not the closure"},
		{"extra", "unexpected entries at the root of the image"},
		{"owner", "store paths not owned by root"},
		{"registration", "nix-store --verify --check-contents failed"},
		{"time", "mkext4fs verify found differences"},
	}
	for _, tt := range tests {
		t.Run(tt.attr, func(t *testing.T) {
			args := []string{file, "-A", "tampered." + tt.attr, "--no-out-link"}
			_, err := n.Output(nil, "nix-build", args...)
			if err != nil && strings.Contains(err.Error(), "signal 9") {
				t.Logf("retrying nix-build once after: %v", err)
				_, err = n.Output(nil, "nix-build", args...)
			}
			if err == nil {
				t.Fatalf("check-image.nix accepted the image with a tampered %s", tt.attr)
			}
			if !strings.Contains(err.Error(), "check-image: ") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("check-image.nix failed, but not with %q:\n%v", tt.want, err)
			}
		})
	}
}

// superblock reads the fields of dumpe2fs -h that the tests look at.
func superblock(t *testing.T, image string) map[string]string {
	t.Helper()
	out, err := exec.Command(testutil.RequireTool(t, "dumpe2fs"), "-h", image).Output()
	if err != nil {
		t.Fatalf("dumpe2fs -h %s: %v", image, err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fields
}

func superblockInt(t *testing.T, sb map[string]string, key string) int64 {
	t.Helper()
	v, err := strconv.ParseInt(sb[key], 10, 64)
	if err != nil {
		t.Fatalf("dumpe2fs field %q = %q: %v", key, sb[key], err)
	}
	return v
}

// TestEntryPointsWithStandIn builds through what users call: default.nix,
// the flake's outputs, the overlay and the NixOS module (see
// entry-points.nix).
func TestEntryPointsWithStandIn(t *testing.T) {
	n := nixtest.New(t)
	debugfs := testutil.RequireTool(t, "debugfs")
	file := filepath.Join(t.TempDir(), "entry-points.nix")
	expr := strings.Replace(string(readFile(t, standIn(t))), "images.nix", "entry-points.nix", 1)
	if err := os.WriteFile(file, []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{
		"defaultNix.makeExt4Fs": "VIA_DEFAULT",
		"flake.makeExt4Fs":      "VIA_FLAKE",
		"flake.creator":         "VIA_CREATOR",
		"overlay.makeExt4Fs":    "VIA_OVERLAY",
		"module.default":        "NIXOS_SD",
		"module.roomy":          "NIXOS_SD",
	}
	attrs := []string{"flake.mkext4fs", "defaultNix.mkext4fs", "defaultNix.testsImage", "flake.checkImage"}
	for a := range labels {
		attrs = append(attrs, a)
	}
	out := n.Build(t, file, attrs...)
	if len(out) != len(attrs) {
		t.Fatalf("nix-build printed %d paths for %d attributes: %q", len(out), len(attrs), out)
	}
	got := map[string]string{}
	for i, a := range attrs {
		got[a] = out[i]
	}

	t.Run("labels", func(t *testing.T) {
		for attr, want := range labels {
			if label := superblock(t, got[attr])["Filesystem volume name"]; label != want {
				t.Errorf("%s: label %q, want %q", attr, label, want)
			}
		}
	})

	t.Run("versions", func(t *testing.T) {
		for attr, want := range map[string]string{
			"flake.mkext4fs":      "mkext4fs 0-unstable-0123abc\n",
			"defaultNix.mkext4fs": "mkext4fs 0-unstable\n",
		} {
			v, err := exec.Command(filepath.Join(got[attr], "bin", "mkext4fs"), "version").Output()
			if err != nil || string(v) != want {
				t.Errorf("%s: version printed %q (%v), want %q", attr, v, err, want)
			}
		}
	})

	t.Run("module passes populateRootCommands", func(t *testing.T) {
		cat, err := exec.Command(debugfs, "-R", "cat /boot/hello", got["module.default"]).Output()
		if err != nil || string(cat) != "hello\n" {
			t.Errorf("/boot/hello in %s: %q (%v)", got["module.default"], cat, err)
		}
	})

	t.Run("module passes headroom and extraInodes", func(t *testing.T) {
		const mib = 1 << 20
		free := func(attr string) (unreserved, inodes int64) {
			sb := superblock(t, got[attr])
			bs := superblockInt(t, sb, "Block size")
			blocks := superblockInt(t, sb, "Free blocks") - superblockInt(t, sb, "Reserved block count")
			return blocks * bs, superblockInt(t, sb, "Free inodes")
		}
		defBytes, defInodes := free("module.default")
		roomyBytes, roomyInodes := free("module.roomy")
		if defBytes < 16*mib || defBytes >= 64*mib {
			t.Errorf("default headroom: %d bytes unreserved and free, want 16 MiB to 64 MiB", defBytes)
		}
		if roomyBytes < 64*mib {
			t.Errorf("headroom = \"64MiB\": %d bytes unreserved and free", roomyBytes)
		}
		if roomyInodes < 20000 || defInodes >= 20000 {
			t.Errorf("extraInodes = 20000: %d free inodes (default: %d)", roomyInodes, defInodes)
		}
	})
}
