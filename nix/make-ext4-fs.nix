# A drop-in for nixpkgs' nixos/lib/make-ext4-fs.nix, usable as
# `sdImage.rootFilesystemCreator`: an ext4 image holding /nix/store with the
# closure of `storePaths`, /nix-path-registration for `nix-store --load-db`,
# and whatever `populateImageCommands` puts in ./files.
#
# The output is the image file itself, named ext4-fs.img (ext4-fs.img.zst
# when `compressImage`), as nixpkgs' creator makes it and sd-image.nix reads
# it. Unlike nixpkgs' version the closure is not copied first: Nix hands it
# over with exportReferencesGraph (structured, so with the NAR hashes Nix
# knows) and mkext4fs writes it straight from the store, sizes the image from
# what it holds, checks the registration against the files, and gives the
# same bytes on every build.
{
  lib,
  stdenvNoCC,
  buildPackages,

  # What nixpkgs' sd-image.nix passes.
  storePaths,
  volumeLabel,
  compressImage ? false,
  populateImageCommands ? "",
  uuid ? "44444444-4444-4444-8888-888888888888",

  # mkext4fs for the build platform. Left null, it is our overlay's
  # buildPackages.mkext4fs, or else built from this source tree. (Not named
  # `mkext4fs`: callPackage would fill that with the host platform's package.)
  mkext4fsPackage ? null,
  # Free space left in the image beyond what the content needs, e.g. "64MiB";
  # null keeps the tool's default (16 MiB, as nixpkgs' creator leaves).
  headroom ? null,
  # Inodes to reserve beyond those the content needs; null: the default.
  extraInodes ? null,
  # Store identical files once, as hard links (like `nix-store --optimise`).
  optimise ? false,
  # "UID:GID" owning the store paths in the image; null: root (0:0).
  owner ? null,
  # More `mkext4fs build` flags, as a list of strings.
  extraArgs ? [ ],
}:

let
  tool =
    if mkext4fsPackage != null then
      mkext4fsPackage
    else
      buildPackages.mkext4fs or (buildPackages.callPackage ./package.nix { });

  flags =
    [
      "--label"
      volumeLabel
      "--uuid"
      uuid
      "--attrs-key"
      "closure"
    ]
    ++ lib.optionals compressImage [
      "--compress"
      "zstd"
    ]
    ++ lib.optionals (headroom != null) [
      "--headroom"
      headroom
    ]
    ++ lib.optionals (extraInodes != null) [
      "--extra-inodes"
      (toString extraInodes)
    ]
    ++ lib.optionals optimise [ "--optimise" ]
    ++ lib.optionals (owner != null) [
      "--owner"
      owner
    ]
    ++ extraArgs;
in
stdenvNoCC.mkDerivation {
  name = "ext4-fs.img" + lib.optionalString compressImage ".zst";

  __structuredAttrs = true;
  # Written to .attrs.json under the key "closure": every path of the
  # closure with its references, NAR hash and NAR size.
  exportReferencesGraph.closure = storePaths;

  buildCommand = ''
    (
      mkdir -p ./files
      ${populateImageCommands}
    )
    ${tool}/bin/mkext4fs build --output "$out" --files "$PWD/files" ${lib.escapeShellArgs flags} \
      "''${NIX_ATTRS_JSON_FILE:-$NIX_BUILD_TOP/.attrs.json}"
  '';

  passthru = {
    inherit storePaths;
    mkext4fs = tool;
  };

  meta.description = "ext4 root filesystem image of a Nix closure, made by mkext4fs";
}
