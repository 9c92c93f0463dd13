# End-to-end checks of the package (its passthru.tests and the flake's
# checks): images of a small closure made through make-ext4-fs.nix, called as
# nixpkgs' sd-image.nix calls a rootFilesystemCreator, each checked by
# check-image.nix, with and without compression.
{
  lib,
  callPackage,
  hello,
  mkext4fs,
}:

let
  storePaths = [ hello ];
  volumeLabel = "NIXOS_SD";
  populateImageCommands = ''
    mkdir -p ./files/boot/extlinux
    printf 'DEFAULT nixos\nLABEL nixos\n  LINUX ../nixos/kernel\n' > ./files/boot/extlinux/extlinux.conf
  '';

  image =
    compressImage:
    callPackage ../make-ext4-fs.nix {
      inherit
        storePaths
        volumeLabel
        compressImage
        populateImageCommands
        ;
      mkext4fsPackage = mkext4fs;
    };

  check =
    image:
    callPackage ./check-image.nix {
      inherit
        image
        storePaths
        volumeLabel
        populateImageCommands
        mkext4fs
        ;
    };
in
{
  image = check (image false);
  imageZstd = check (image true);
}
