# A small package set that looks enough like nixpkgs for the files in nix/
# that build images (make-ext4-fs.nix, tests/check-image.nix) to evaluate and
# build with a bare Nix and the host's tools: no nixpkgs, no sandbox.
#
# Only what those files use is here, each piece with nixpkgs' meaning:
# callPackage fills a function's arguments from the set; mkDerivation and
# runCommand run `buildCommand` with bash, PATH made of nativeBuildInputs
# and the host's directories, and with structured attributes loaded the way
# stdenv's setup loads them. buildPackages is the set itself (no cross).
# e2fsprogs, libfaketime, zstd and nix are store paths whose bin/ links to
# the host's programs.
{
  # The mkext4fs executable to package, a path outside the store.
  mkext4fsBin,
  system ? builtins.currentSystem,
  hostPath ? "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
}:

let
  lib = rec {
    optionals = cond: list: if cond then list else [ ];
    optionalString = cond: s: if cond then s else "";
    concatStringsSep = builtins.concatStringsSep;
    concatMapStringsSep = sep: f: list: builtins.concatStringsSep sep (map f list);
    makeBinPath = concatMapStringsSep ":" (p: "${p}/bin");
    # nixpkgs quotes only what needs quoting.
    escapeShellArg =
      arg:
      let
        s = toString arg;
      in
      if builtins.match "[[:alnum:],._+:@%/-]+" s == null then
        "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] s}'"
      else
        s;
    escapeShellArgs = concatMapStringsSep " " escapeShellArg;
  };

  # Nix 2.8 sometimes reports a builder that exits right after writing its
  # output as killed by signal 9; a short background sleep avoids it.
  epilogue = "sleep 0.2 &";

  mkDerivation =
    attrs:
    let
      nativeBuildInputs = attrs.nativeBuildInputs or [ ];
      structured = attrs.__structuredAttrs or false;
      passthru = attrs.passthru or { };
      drvAttrs = builtins.removeAttrs attrs [
        "nativeBuildInputs"
        "buildCommand"
        "passthru"
        "meta"
      ];
      script = ''
        set -euo pipefail
        ${lib.optionalString structured ''
          source "''${NIX_ATTRS_SH_FILE:-$NIX_BUILD_TOP/.attrs.sh}"
          out=''${outputs[out]}
        ''}
        export PATH=${lib.makeBinPath nativeBuildInputs}:${hostPath}
        cd "$NIX_BUILD_TOP"
        ${attrs.buildCommand}
        ${epilogue}
      '';
      drv = derivation (
        drvAttrs
        // {
          inherit system;
          builder = "/bin/bash";
          args = [
            "-c"
            script
          ];
        }
      );
    in
    drv // passthru // { meta = attrs.meta or { }; };

  # A store path whose bin/ holds links to host programs, found on hostPath.
  hostTools =
    name: programs:
    mkDerivation {
      inherit name;
      buildCommand = ''
        mkdir -p "$out/bin"
        for p in ${lib.escapeShellArgs programs}; do
          ln -s "$(command -v "$p")" "$out/bin/$p"
        done
      '';
    };

  self = {
    inherit lib system;
    buildPackages = self;
    pkgsBuildBuild = self;

    callPackage =
      fn: args:
      let
        f = if builtins.isFunction fn then fn else import fn;
      in
      f (builtins.intersectAttrs (builtins.functionArgs f) self // args);

    stdenv = {
      inherit mkDerivation;
      hostPlatform.system = system;
      buildPlatform.system = system;
    };
    stdenvNoCC = self.stdenv;

    runCommand =
      name: env: buildCommand:
      mkDerivation (env // { inherit name buildCommand; });

    e2fsprogs = hostTools "e2fsprogs" [
      "mkfs.ext4"
      "debugfs"
      "e2fsck"
      "dumpe2fs"
      "tune2fs"
    ];
    libfaketime = hostTools "libfaketime" [ "faketime" ];
    zstd = hostTools "zstd" [ "zstd" ];
    nix = hostTools "nix" [
      "nix-store"
      "nix-hash"
    ];

    mkext4fs = mkDerivation {
      name = "mkext4fs";
      buildCommand = ''
        mkdir -p "$out/bin"
        cp ${
          builtins.path {
            path = mkext4fsBin;
            name = "mkext4fs-bin";
          }
        } "$out/bin/mkext4fs"
      '';
    };
  };
in
self
