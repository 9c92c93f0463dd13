# The entry points users call, evaluated against the stand-in package set:
# default.nix (given `pkgs`), the flake's outputs (given a fake nixpkgs input
# whose legacyPackages are the stand-in), the overlay, and the NixOS module
# (nix/sd-image.nix) evaluated with just enough of the module system to
# produce its sdImage.rootFilesystemImage. Module-system semantics (option
# types, priorities) are not modelled: `nix flake check` covers those.
{
  go ? "go",
  goCache ? null,
}:
let
  standIn = import ./stand-in.nix { inherit go goCache; };
  inherit (standIn) lib;
  closure = import ./closure.nix { inherit (standIn) runCommand; };
  storePaths = [ closure.app ];

  defaultNix = import ../../default.nix { pkgs = standIn; };

  systems = [ standIn.system ];
  fakeNixpkgs = {
    lib = {
      genAttrs = names: f: builtins.listToAttrs (map (name: { inherit name; value = f name; }) names);
      trivial.release = "25.11";
      nixosSystem = _: throw "the stand-in has no NixOS";
    };
    legacyPackages = builtins.listToAttrs (map (name: { inherit name; value = standIn; }) systems);
    outPath = throw "the stand-in has no nixpkgs source";
  };
  flake =
    (import ../../flake.nix).outputs {
      self = flake;
      nixpkgs = fakeNixpkgs;
    }
    // {
      shortRev = "0123abc";
    };
  flakePackages = flake.packages.${standIn.system};

  overlaid =
    let
      final = standIn // flake.overlays.default final standIn;
    in
    final;

  # nix/sd-image.nix with a minimal module system: mkIf, mkMerge and
  # optionalAttrs as nixpkgs' lib evaluates them when nothing conflicts.
  moduleLib = lib // {
    mkOption = o: o;
    mkIf = cond: content: if cond then content else { };
    mkMerge = builtins.foldl' (a: b: a // b) { };
    optionalAttrs = cond: attrs: if cond then attrs else { };
    literalExpression = text: text;
    types = {
      bool = "bool";
      str = "str";
      package = "package";
      ints.unsigned = "unsigned";
      nullOr = t: "null or ${t}";
      listOf = t: "list of ${t}";
      strMatching = re: "string matching ${re}";
    };
  };
  evalModule =
    mkext4fsConfig:
    let
      module = import ../../nix/sd-image.nix {
        lib = moduleLib;
        pkgs = standIn;
        modulesPath = "/nixpkgs/nixos/modules";
        options.sdImage = {
          rootFilesystemCreator = { };
          rootFilesystemImage = { };
        };
        config.sdImage = {
          inherit storePaths;
          compressImage = false;
          populateRootCommands = "mkdir -p ./files/boot; echo hello > ./files/boot/hello";
          rootVolumeLabel = "NIXOS_SD";
          rootPartitionUUID = null;
          mkext4fs = {
            enable = true;
            package = standIn.mkext4fs;
            headroom = null;
            extraInodes = null;
            optimise = false;
            owner = null;
            extraArgs = [ ];
          } // mkext4fsConfig;
        };
      };
    in
    assert module.imports == [ "/nixpkgs/nixos/modules/installer/sd-card/sd-image.nix" ];
    assert builtins.all (a: a.assertion) module.config.assertions;
    assert module.config.sdImage.rootFilesystemCreator == ../../nix/make-ext4-fs.nix;
    module.config.sdImage.rootFilesystemImage;
in
{
  defaultNix = {
    inherit (defaultNix) mkext4fs default;
    testsImage = defaultNix.tests.image;
    makeExt4Fs = defaultNix.lib.makeExt4Fs {
      inherit storePaths;
      volumeLabel = "VIA_DEFAULT";
    };
  };

  flake = {
    inherit (flakePackages) mkext4fs default;
    checkImage = flake.checks.${standIn.system}.image;
    makeExt4Fs = flake.lib.makeExt4Fs {
      pkgs = standIn;
      inherit storePaths;
      volumeLabel = "VIA_FLAKE";
    };
    creator = standIn.callPackage flake.lib.rootFilesystemCreator {
      inherit storePaths;
      volumeLabel = "VIA_CREATOR";
    };
  };

  overlay = {
    inherit (overlaid) mkext4fs;
    makeExt4Fs = overlaid.makeExt4Fs {
      inherit storePaths;
      volumeLabel = "VIA_OVERLAY";
    };
  };

  module = {
    default = evalModule { };
    roomy = evalModule {
      headroom = "64MiB";
      extraInodes = 20000;
    };
  };
}
