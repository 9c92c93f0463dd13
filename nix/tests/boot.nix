# A NixOS VM test that boots from an SD image whose root filesystem mkext4fs
# made: nixpkgs' sd-image-x86_64.nix (or sd-image-aarch64.nix on aarch64)
# with our module, compressed as nixpkgs does by default. The VM starts the
# image's own kernel, initrd and init directly (nixpkgs' U-Boot boot test is
# marked broken), with the image as its only disk; then the first-boot script
# loads /nix-path-registration and grows the root partition, and the test
# checks that Nix finds every path valid and unmodified.
{
  pkgs,
  nixosModule,
}:

let
  inherit (pkgs) lib;
  system = pkgs.stdenv.hostPlatform.system;

  platform =
    {
      x86_64-linux = {
        profile = "sd-image-x86_64.nix";
        qemu = "${pkgs.qemu_test}/bin/qemu-system-x86_64 -machine accel=kvm:tcg -cpu max";
        console = "ttyS0";
      };
      aarch64-linux = {
        profile = "sd-image-aarch64.nix";
        qemu = "${pkgs.qemu_test}/bin/qemu-system-aarch64 -machine virt,gic-version=max,accel=kvm:tcg -cpu max";
        console = "ttyAMA0";
      };
    }
    .${system} or (throw "the boot test runs on x86_64-linux and aarch64-linux, not ${system}");

  nixos = import (pkgs.path + "/nixos/lib/eval-config.nix") {
    system = null;
    modules = [
      (pkgs.path + "/nixos/modules/installer/sd-card/${platform.profile}")
      (pkgs.path + "/nixos/modules/testing/test-instrumentation.nix")
      nixosModule
      {
        nixpkgs.pkgs = pkgs;
        sdImage.compressImage = true;
        boot.initrd.availableKernelModules = [
          "virtio_pci"
          "virtio_blk"
          "virtio_console"
        ];
        documentation.enable = false;
      }
    ];
  };
  inherit (nixos) config;

  image = "${config.system.build.sdImage}/sd-image/${config.image.fileName}";
  kernel = "${config.system.build.kernel}/${config.system.boot.loader.kernelFile}";
  initrd = "${config.system.build.initialRamdisk}/${config.system.boot.loader.initrdFile}";
  toplevel = config.system.build.toplevel;
  cmdline = lib.concatStringsSep " " (
    [
      "init=${toplevel}/init"
      "console=${platform.console}"
    ]
    ++ config.boot.kernelParams
  );
in
pkgs.testers.runNixOSTest {
  name = "mkext4fs-boot";
  nodes = { };
  testScript = ''
    import os
    import subprocess
    import tempfile

    disk = os.path.join(tempfile.mkdtemp(), "sd.img")
    subprocess.run(["${pkgs.zstd}/bin/zstd", "-d", "-q", "${image}", "-o", disk], check=True)
    # Room for the first boot to grow the root partition into.
    os.truncate(disk, 4 * 1024**3)

    machine = create_machine(
        "${platform.qemu} -m 1024"
        " -kernel ${kernel} -initrd ${initrd}"
        " -append '${cmdline}'"
        f" -drive file={disk},if=virtio,format=raw"
    )
    machine.start()
    machine.wait_for_unit("multi-user.target")

    with subtest("the root filesystem is the image's, grown to the disk"):
        machine.succeed("findmnt -n -o FSTYPE / | grep -x ext4")
        machine.succeed("test \"$(blkid -s LABEL -o value \"$(findmnt -n -o SOURCE /)\")\" = ${config.sdImage.rootVolumeLabel}")
        machine.succeed("test \"$(df --output=size -B1M / | tail -n 1)\" -gt 3000")

    with subtest("the registration was loaded and the store is intact"):
        machine.succeed("test ! -e /nix-path-registration")
        machine.succeed("nix-store --check-validity ${toplevel}")
        out = machine.succeed("nix-store --verify --check-contents 2>&1")
        assert "modified" not in out, out
        machine.succeed("nix-store -qR ${toplevel} | grep -c . >&2")

    machine.shutdown()
  '';
}
