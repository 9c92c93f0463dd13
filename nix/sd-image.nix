# NixOS module: nixpkgs' SD-card image (installer/sd-card/sd-image.nix) with
# its root filesystem made by mkext4fs.
#
# Import it next to one of nixpkgs' sd-image-*.nix profiles (or alone, with
# your own sdImage.populate*Commands). It sets sdImage.rootFilesystemCreator
# to our make-ext4-fs.nix and builds sdImage.rootFilesystemImage with the
# options below, which nixpkgs' creator interface has no room for. Needs
# nixpkgs 25.11 or later (where sd-image.nix has those two options).
{
  config,
  lib,
  options,
  pkgs,
  modulesPath,
  ...
}:

let
  cfg = config.sdImage.mkext4fs;
  sd = config.sdImage;
  hasCreator = options.sdImage ? rootFilesystemCreator && options.sdImage ? rootFilesystemImage;
in
{
  imports = [ "${modulesPath}/installer/sd-card/sd-image.nix" ];

  options.sdImage.mkext4fs = {
    enable = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = "Whether mkext4fs makes the root filesystem of the SD image.";
    };

    package = lib.mkOption {
      type = lib.types.package;
      default = pkgs.buildPackages.mkext4fs or (pkgs.buildPackages.callPackage ./package.nix { });
      defaultText = lib.literalExpression "pkgs.buildPackages.mkext4fs";
      description = "mkext4fs for the build platform.";
    };

    headroom = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "256MiB";
      description = ''
        Free space in the root filesystem beyond what its content needs
        (`--headroom`). Null keeps the default of 16 MiB, as nixpkgs leaves;
        the filesystem grows to the card at first boot anyway.
      '';
    };

    extraInodes = lib.mkOption {
      type = lib.types.nullOr lib.types.ints.unsigned;
      default = null;
      example = 10000;
      description = "Inodes to reserve beyond those the content needs (`--extra-inodes`).";
    };

    optimise = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = ''
        Store identical files of the closure once, as hard links, like
        `nix-store --optimise` (`--optimise`).
      '';
    };

    owner = lib.mkOption {
      type = lib.types.nullOr (lib.types.strMatching "[0-9]+:[0-9]+");
      default = null;
      example = "0:30000";
      description = "`UID:GID` owning the store paths in the image (`--owner`); null: root.";
    };

    extraArgs = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "--profile=legacy" ];
      description = "More flags for `mkext4fs build`.";
    };
  };

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      {
        assertions = [
          {
            assertion = hasCreator;
            message = "sdImage.mkext4fs needs a nixpkgs whose sd-image.nix has sdImage.rootFilesystemCreator and sdImage.rootFilesystemImage (25.11 or later).";
          }
        ];
      }
      (lib.optionalAttrs hasCreator {
        sdImage.rootFilesystemCreator = ./make-ext4-fs.nix;
        # What sd-image.nix would build from the creator, plus our options.
        sdImage.rootFilesystemImage = pkgs.callPackage ./make-ext4-fs.nix (
          {
            inherit (sd) storePaths compressImage;
            populateImageCommands = sd.populateRootCommands;
            volumeLabel = sd.rootVolumeLabel;
            mkext4fsPackage = cfg.package;
            inherit (cfg)
              headroom
              extraInodes
              optimise
              owner
              extraArgs
              ;
          }
          // lib.optionalAttrs (sd.rootPartitionUUID != null) { uuid = sd.rootPartitionUUID; }
        );
      })
    ]
  );
}
