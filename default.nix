# mkext4fs without flakes:
#   nix-build -A mkext4fs
#   nix-build -A tests.image
#   import ./. { pkgs = import <nixpkgs> { }; }
# lib.makeExt4Fs { storePaths; volumeLabel; ... } builds an image with this
# package set; lib.rootFilesystemCreator and nixosModules.default are for
# NixOS configurations (see README, "Using it from Nix").
{
  nixpkgs ? <nixpkgs>,
  system ? builtins.currentSystem,
  pkgs ? import nixpkgs { inherit system; },
  version ? "0-unstable",
}:

let
  mkext4fs = pkgs.callPackage ./nix/package.nix { inherit version; };
in
{
  inherit mkext4fs;
  default = mkext4fs;
  inherit (mkext4fs) tests;

  overlay = import ./nix/overlay.nix { inherit version; };
  nixosModules.default = ./nix/sd-image.nix;

  lib = {
    rootFilesystemCreator = ./nix/make-ext4-fs.nix;
    makeExt4Fs =
      args:
      pkgs.callPackage ./nix/make-ext4-fs.nix (
        {
          mkext4fsPackage = pkgs.buildPackages.callPackage ./nix/package.nix { inherit version; };
        }
        // args
      );
  };
}
