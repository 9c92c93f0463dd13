# mkext4fs, the program. The wrapper puts this package set's e2fsprogs and
# libfaketime first on PATH, so builds do not depend on the caller's PATH
# (or on the e2fsprogs it may hold); the tools' own flags still override.
#
# The Go dependencies are vendored in the source tree (vendor/), so
# vendorHash is null and nothing is fetched: see README, "Development".
{
  lib,
  buildGoModule,
  makeBinaryWrapper,
  callPackage,
  e2fsprogs,
  libfaketime,
  zstd,
  version ? "0-unstable",
}:

buildGoModule (finalAttrs: {
  pname = "mkext4fs";
  inherit version;

  # The Go sources and what their tests read (testdata/ at the top too).
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../go.mod
      ../go.sum
      ../vendor
      ../cmd
      ../internal
      ../pkg
      ../testdata
    ];
  };
  vendorHash = null;

  env.CGO_ENABLED = 0;
  ldflags = [
    "-s"
    "-w"
    "-X main.version=${finalAttrs.version}"
  ];

  nativeBuildInputs = [ makeBinaryWrapper ];

  # The Go tests run the real e2fsprogs and libfaketime, and zstd to read
  # what --compress wrote. Those that need root or Nix (loop mounts, a
  # private Nix store) skip themselves in the build sandbox.
  nativeCheckInputs = [
    e2fsprogs
    libfaketime
    zstd
  ];

  postInstall = ''
    wrapProgram "$out/bin/mkext4fs" \
      --prefix PATH : ${
        lib.makeBinPath [
          e2fsprogs
          libfaketime
        ]
      }
  '';

  doInstallCheck = true;
  installCheckPhase = ''
    runHook preInstallCheck
    "$out/bin/mkext4fs" version | grep -F ${lib.escapeShellArg finalAttrs.version}
    runHook postInstallCheck
  '';

  passthru.tests = callPackage ./tests {
    mkext4fs = finalAttrs.finalPackage;
  };

  meta = {
    description = "Build the ext4 root filesystem of NixOS SD-card images from a Nix closure, reproducibly";
    homepage = "https://github.com/mkext4fs/mkext4fs";
    mainProgram = "mkext4fs";
    platforms = lib.platforms.linux;
  };
})
