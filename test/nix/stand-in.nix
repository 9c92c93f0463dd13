# A small package set that looks enough like nixpkgs for the files in nix/
# (package.nix, make-ext4-fs.nix, tests/) to evaluate and build with a bare
# Nix and the host's tools: no nixpkgs, no sandbox.
#
# Only what those files use is here, each piece with nixpkgs' meaning:
# callPackage fills a function's arguments from the set; mkDerivation and
# runCommand run `buildCommand` with bash, PATH made of nativeBuildInputs
# and the host's directories, the inputs' nix-support/setup-hook sourced, and
# structured attributes loaded as stdenv's setup loads them; buildGoModule
# builds a vendored module with the host's Go (no tests: scripts/test runs
# them); makeBinaryWrapper's hook provides wrapProgram --prefix;
# lib.fileset.toSource copies the listed files and fails on a missing one.
# buildPackages is the set itself (no cross). e2fsprogs, libfaketime, zstd
# and nix are store paths whose bin/ links to the host's programs; hello is
# a small package of the test closure.
{
  # The go command to build with, and a build cache to share (null: none).
  go ? "go",
  goCache ? null,
  # Whether mkext4fs is in the set, as our overlay puts it.
  withOverlay ? true,
  system ? builtins.currentSystem,
  hostPath ? "/usr/local/go/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
}:

let
  lib = rec {
    optionals = cond: list: if cond then list else [ ];
    optionalString = cond: s: if cond then s else "";
    hasPrefix = prefix: s: builtins.substring 0 (builtins.stringLength prefix) s == prefix;
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
    platforms.linux = [
      "x86_64-linux"
      "aarch64-linux"
    ];

    fileset = {
      unions = list: list;
      toSource =
        { root, fileset }:
        let
          files = map toString fileset;
          wanted = p: builtins.any (f: p == f || hasPrefix "${f}/" p || hasPrefix "${p}/" f) files;
          missing = builtins.filter (f: !builtins.pathExists f) fileset;
        in
        if missing != [ ] then
          throw "lib.fileset.toSource: ${toString (builtins.head missing)} does not exist"
        else
          builtins.path {
            path = root;
            name = "source";
            filter = p: _type: wanted p;
          };
    };
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
        runHook() { :; }
        for input in ${toString nativeBuildInputs}; do
          if [ -f "$input/nix-support/setup-hook" ]; then source "$input/nix-support/setup-hook"; fi
        done
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

  runCommand =
    name: env: buildCommand:
    mkDerivation (env // { inherit name buildCommand; });

  # A store path whose bin/ holds links to host programs, found on hostPath.
  hostTools =
    name: programs:
    runCommand name { } ''
      mkdir -p "$out/bin"
      for p in ${lib.escapeShellArgs programs}; do
        ln -s "$(command -v "$p")" "$out/bin/$p"
      done
    '';

  buildGoModule =
    f:
    let
      attrs = if builtins.isFunction f then f finalAttrs else f;
      finalAttrs = attrs // {
        finalPackage = package;
      };
      package = mkDerivation {
        name = "${attrs.pname}-${attrs.version}";
        inherit (attrs) src;
        nativeBuildInputs = attrs.nativeBuildInputs or [ ];
        passthru = attrs.passthru or { };
        meta = attrs.meta or { };
        CGO_ENABLED = toString (attrs.env.CGO_ENABLED or 1);
        ldflags = attrs.ldflags or [ ];
        postInstall = attrs.postInstall or "";
        installCheckPhase = if attrs.doInstallCheck or false then attrs.installCheckPhase or "" else "";
        buildCommand =
          if attrs.vendorHash != null then
            throw "the stand-in buildGoModule builds vendored modules only (vendorHash = null)"
          else
            ''
              export HOME=$TMPDIR GOPATH=$TMPDIR/go GOPROXY=off GOTOOLCHAIN=local
              export GOCACHE=${if goCache != null then goCache else "$TMPDIR/go-cache"}
              export GOFLAGS="-mod=vendor -trimpath"
              cp -r "$src" source
              chmod -R u+w source
              cd source
              ${go} install -ldflags "$ldflags" ./...
              mkdir -p "$out/bin"
              cp "$GOPATH"/bin/* "$out/bin/"
              eval "$postInstall"
              eval "$installCheckPhase"
            '';
      };
    in
    package;

  # wrapProgram PROG --prefix VAR SEP VALUE ...: PROG becomes a script that
  # sets the variables and runs the original.
  makeBinaryWrapper = runCommand "make-binary-wrapper" { } ''
    mkdir -p "$out/nix-support"
    cat > "$out/nix-support/setup-hook" <<'HOOK'
    wrapProgram() {
      local prog=$1 hidden
      shift
      hidden="$(dirname "$prog")/.$(basename "$prog")-wrapped"
      mv "$prog" "$hidden"
      {
        echo '#!/bin/bash'
        while [ $# -gt 0 ]; do
          case $1 in
            --prefix)
              printf 'export %s=%q''${%s:+%q$%s}\n' "$2" "$4" "$2" "$3" "$2"
              shift 4
              ;;
            *)
              echo "stand-in wrapProgram: $1 is not supported" >&2
              return 1
              ;;
          esac
        done
        printf 'exec -a "$0" %q "$@"\n' "$hidden"
      } > "$prog"
      chmod +x "$prog"
    }
    HOOK
  '';

  self = {
    inherit
      lib
      system
      runCommand
      buildGoModule
      makeBinaryWrapper
      ;
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

    e2fsprogs = hostTools "e2fsprogs" [
      "mkfs.ext4"
      "mke2fs"
      "debugfs"
      "e2fsck"
      "fsck.ext4"
      "dumpe2fs"
      "tune2fs"
      "resize2fs"
    ];
    # Laid out as nixpkgs' libfaketime: bin/faketime and lib/libfaketime.so.1.
    libfaketime = runCommand "libfaketime" { } ''
      mkdir -p "$out/bin" "$out/lib"
      ln -s "$(command -v faketime)" "$out/bin/faketime"
      for lib in /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1; do
        if [ -e "$lib" ]; then
          ln -s "$lib" "$out/lib/libfaketime.so.1"
          break
        fi
      done
      test -e "$out/lib/libfaketime.so.1"
    '';
    zstd = hostTools "zstd" [ "zstd" ];
    nix = hostTools "nix" [
      "nix-store"
      "nix-hash"
    ];

    hello = (import ./closure.nix { inherit runCommand; }).app;
  }
  // (
    if withOverlay then
      {
        mkext4fs = self.callPackage ../../nix/package.nix { };
      }
    else
      { }
  );
in
self
