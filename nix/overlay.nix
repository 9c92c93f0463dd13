# Adds mkext4fs to a nixpkgs package set, and makeExt4Fs: our
# make-ext4-fs.nix, called like nixpkgs' (`pkgs.makeExt4Fs { storePaths;
# volumeLabel; … }`). With the overlay in place, make-ext4-fs.nix and the
# NixOS module pick buildPackages.mkext4fs, so an overridden package is used
# everywhere.
{
  version ? "0-unstable",
}:
final: prev: {
  mkext4fs = final.callPackage ./package.nix { inherit version; };
  makeExt4Fs = args: final.callPackage ./make-ext4-fs.nix args;
}
