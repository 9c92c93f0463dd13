# What the integration test builds, with the stand-in package set:
#   - the package (nix/package.nix) and its passthru.tests, which the flake
#     runs as checks;
#   - nix/make-ext4-fs.nix called the way nixpkgs' sd-image.nix calls a
#     rootFilesystemCreator, on a small closure, with and without
#     compression, each checked by nix/tests/check-image.nix;
#   - the same without mkext4fs in the package set (no overlay);
#   - tampered copies of the image, which the check must reject.
{
  go ? "go",
  goCache ? null,
}:
let
  pkgs = import ./stand-in.nix { inherit go goCache; };
  noOverlay = import ./stand-in.nix {
    inherit go goCache;
    withOverlay = false;
  };
  closure = import ./closure.nix { inherit (pkgs) runCommand; };

  storePaths = [
    closure.app
    closure.link
    closure.exe
  ];
  volumeLabel = "NIXOS_SD";
  populateImageCommands = ''
    mkdir -p ./files/boot/extlinux
    printf 'DEFAULT nixos\nLABEL nixos\n  LINUX ../nixos/kernel\n' > ./files/boot/extlinux/extlinux.conf
  '';

  makeImage =
    compressImage:
    makeImageWith pkgs compressImage;
  makeImageWith =
    pkgs: compressImage:
    pkgs.callPackage ../../nix/make-ext4-fs.nix {
      inherit
        storePaths
        volumeLabel
        compressImage
        populateImageCommands
        ;
    };

  check =
    image:
    pkgs.callPackage ../../nix/tests/check-image.nix {
      inherit
        image
        storePaths
        volumeLabel
        populateImageCommands
        ;
    };

  image = makeImage false;
  imageZstd = makeImage true;

  # A copy of the plain image changed by a script (debugfs, mostly).
  tamper =
    script:
    pkgs.runCommand "ext4-fs.img"
      {
        nativeBuildInputs = [ pkgs.e2fsprogs ];
        passthru = { inherit storePaths; };
      }
      ''
        cp ${image} "$out"
        chmod u+w "$out"
        printf 'tampered\n' > tampered.txt
        ${script}
      '';
  debugfs = commands: ''
    printf '%s\n' ${pkgs.lib.escapeShellArgs commands} | debugfs -w -f - "$out" > /dev/null
  '';
in
{
  inherit (pkgs) mkext4fs;
  inherit (pkgs.mkext4fs) tests;
  inherit image imageZstd;
  imageNoOverlay = makeImageWith noOverlay false;
  inherit (closure)
    app
    link
    exe
    lib
    data
    ;
  checkImage = check image;
  checkImageZstd = check imageZstd;

  # Each of these must fail.
  tampered = {
    mode = check (tamper (debugfs [ "sif ${closure.lib}/bin/run mode 0100755" ]));
    content = check (
      tamper (debugfs [
        "rm ${closure.lib}/a.b"
        "write tampered.txt ${closure.lib}/a.b"
        "sif ${closure.lib}/a.b mode 0100444"
      ])
    );
    symlink = check (
      tamper (debugfs [
        "rm ${closure.lib}/bin/relative"
        "symlink ${closure.lib}/bin/relative ../a-"
      ])
    );
    missing = check (tamper (debugfs [ "rm ${closure.data}" ]));
    extra = check (tamper (debugfs [ "write tampered.txt /etc-hostname" ]));
    owner = check (tamper (debugfs [ "sif ${closure.exe} uid 1000" ]));
    # Only mkext4fs verify looks at times.
    time = check (tamper (debugfs [ "sif ${closure.lib}/A mtime @5" ]));
    # One character of the first NAR hash changed.
    registration = check (
      tamper ''
        debugfs -R "dump /nix-path-registration reg" "$out" 2> /dev/null
        awk 'NR == 2 { c = substr($0, length($0)); $0 = substr($0, 1, length($0) - 1) (c == "0" ? "1" : "0") } { print }' reg > reg2
        cmp -s reg reg2 && exit 1
        ${debugfs [
          "rm /nix-path-registration"
          "write reg2 /nix-path-registration"
          "sif /nix-path-registration mode 0100444"
        ]}
      ''
    );
  };
}
