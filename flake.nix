{
  description = "mkext4fs: the ext4 root filesystem of NixOS SD-card images, made from a Nix closure";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      version = "0-unstable-" + (self.shortRev or self.dirtyShortRev or "dirty");

      mkext4fsFor = pkgs: pkgs.callPackage ./nix/package.nix { inherit version; };

      # One of nixpkgs' SD-card profiles with our module, built on
      # buildSystem for hostSystem (cross-compiled when they differ).
      sdImage =
        buildSystem: hostSystem: profile:
        (lib.nixosSystem {
          modules = [
            "${nixpkgs}/nixos/modules/installer/sd-card/${profile}"
            self.nixosModules.default
            {
              nixpkgs.buildPlatform = buildSystem;
              nixpkgs.hostPlatform = hostSystem;
              system.stateVersion = lib.trivial.release;
            }
          ];
        }).config.system.build.sdImage;
    in
    {
      overlays.default = import ./nix/overlay.nix { inherit version; };

      nixosModules.default =
        { lib, pkgs, ... }:
        {
          imports = [ ./nix/sd-image.nix ];
          sdImage.mkext4fs.package = lib.mkDefault (mkext4fsFor pkgs.buildPackages);
        };

      lib = {
        # For sdImage.rootFilesystemCreator, or pkgs.callPackage.
        rootFilesystemCreator = ./nix/make-ext4-fs.nix;
        # makeExt4Fs { pkgs; storePaths; volumeLabel; ... }: the image.
        makeExt4Fs =
          { pkgs, ... }@args:
          pkgs.callPackage ./nix/make-ext4-fs.nix (
            { mkext4fsPackage = mkext4fsFor pkgs.buildPackages; } // builtins.removeAttrs args [ "pkgs" ]
          );
      };

      packages = forAllSystems (
        pkgs:
        let
          system = pkgs.stdenv.hostPlatform.system;
          mkext4fs = mkext4fsFor pkgs;
        in
        {
          inherit mkext4fs;
          default = mkext4fs;
          # Raspberry Pi 3/4 (and 02, CM4): nixpkgs' aarch64 SD image.
          sdImage-rpi = sdImage system "aarch64-linux" "sd-image-aarch64.nix";
          # Raspberry Pi 0/1.
          sdImage-raspberrypi-armv6l = sdImage system "armv6l-linux" "sd-image-raspberrypi.nix";
          sdImage-armv7l-multiplatform = sdImage system "armv7l-linux" "sd-image-armv7l-multiplatform.nix";
        }
      );

      checks = forAllSystems (
        pkgs:
        let
          mkext4fs = self.packages.${pkgs.stdenv.hostPlatform.system}.mkext4fs;
        in
        {
          # Building the package runs the Go tests.
          inherit mkext4fs;
          inherit (mkext4fs.tests) image imageZstd;
          boot = import ./nix/tests/boot.nix {
            inherit pkgs;
            nixosModule = self.nixosModules.default;
          };
        }
      );

      formatter = forAllSystems (pkgs: pkgs.nixfmt);
    };
}
