# A few small store paths for the integration test, built with the stand-in
# package set: a dependency chain, a symlink output, an executable output,
# names with spaces, a self-reference and a hard-to-sort set of names.
#
#   app -> lib -> data        app's bin/app names lib, lib links to data
#   link -> data              the output is a symlink
#   exe                       the output is an executable file
{ runCommand }:
rec {
  data = runCommand "it-data" { } ''
    printf 'single-file output\n' > "$out"
  '';

  exe = runCommand "it-exe" { } ''
    printf '#!/bin/sh\necho exe\n' > "$out"
    chmod 0555 "$out"
  '';

  link = runCommand "it-link" { } ''
    ln -s ${data} "$out"
  '';

  lib = runCommand "it-lib" { } ''
    mkdir -p "$out/share/dir with space" "$out/bin" "$out/empty dir"
    printf 'spaced\n' > "$out/share/dir with space/file name"
    printf 1 > "$out/A"
    printf 2 > "$out/a b"
    printf 3 > "$out/a-"
    printf 4 > "$out/a.b"
    : > "$out/empty"
    printf '#!/bin/sh\necho lib\n' > "$out/bin/run"
    chmod 0555 "$out/bin/run"
    ln -s ../A "$out/bin/relative"
    ln -s ${data} "$out/data"
    printf '%s\n' "$out" > "$out/self"
    seq 1 60000 > "$out/numbers"
  '';

  app = runCommand "it-app" { } ''
    mkdir -p "$out/bin"
    printf '#!/bin/sh\nexec ${lib}/bin/run "$@"\n' > "$out/bin/app"
    chmod 0555 "$out/bin/app"
  '';
}
