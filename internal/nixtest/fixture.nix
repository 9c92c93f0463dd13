# Store paths for tests, built with the host's /bin/sh and coreutils (no
# nixpkgs needed), and graphs of their closure in both forms Nix writes for
# exportReferencesGraph.
#
#   app -> lib -> data        a dependency chain
#   link -> data              the output itself is a symlink
#   exe                       the output itself is an executable file
{ system ? builtins.currentSystem }:
let
  # Ending with a short background sleep keeps Nix 2.8 from killing a
  # builder that is just exiting ("signal 9").
  build = name: script: extra: derivation ({
    inherit name system;
    builder = "/bin/sh";
    args = [ "-c" "set -eu\n${script}\nsleep 0.2 &" ];
    PATH = "/usr/bin:/bin";
  } // extra);

  data = build "fixture-data" ''
    printf 'greetings from a single-file output\n' > "$out"
  '' { };

  exe = build "fixture-exe" ''
    printf '#!/bin/sh\necho exe\n' > "$out"
    chmod 0555 "$out"
  '' { };

  link = build "fixture-link" ''
    ln -s ${data} "$out"
  '' { };

  lib = build "fixture-lib" ''
    mkdir -p "$out/a/b/c" "$out/bin" "$out/share/dir with space" "$out/emptydir"
    printf 'deep\n' > "$out/a/b/c/deep"
    : > "$out/empty"
    printf 'spaces\n' > "$out/name with space"
    printf 'in a spaced dir\n' > "$out/share/dir with space/file"
    # Bytewise order: A < a < "a b" < a- < a.b < a0, with a/ a directory.
    printf 1 > "$out/A"
    printf 2 > "$out/a b"
    printf 3 > "$out/a-"
    printf 4 > "$out/a.b"
    printf 5 > "$out/a0"
    printf '#!/bin/sh\necho lib\n' > "$out/bin/run"
    chmod 0555 "$out/bin/run"
    ln -s ../a/b/c/deep "$out/bin/relative-link"
    ln -s ${data} "$out/data-link"
    ln -s does-not-exist "$out/dangling-link"
    printf '%s\n' "$out" > "$out/self-reference"
    # Larger than a read buffer and not a multiple of 8 bytes.
    head -c 3000001 /dev/zero | tr '\000' z > "$out/big"
  '' { };

  app = build "fixture-app" ''
    mkdir -p "$out/bin"
    printf '#!/bin/sh\nexec ${lib}/bin/run "$@"\n' > "$out/bin/app"
    chmod 0555 "$out/bin/app"
  '' { };

  graphText = build "fixture-graph-text" ''
    mkdir "$out"
    cp closure-app closure-link closure-exe "$out/"
  '' {
    exportReferencesGraph = [ "closure-app" app "closure-link" link "closure-exe" exe ];
  };

  graphJSON = derivation {
    name = "fixture-graph-json";
    inherit system;
    builder = "/bin/bash";
    __structuredAttrs = true;
    exportReferencesGraph = { app = [ app ]; link = [ link ]; exe = [ exe ]; };
    args = [ "-c" ''
      set -eu
      source .attrs.sh
      export PATH=/usr/bin:/bin
      mkdir "''${outputs[out]}"
      cp .attrs.json "''${outputs[out]}/attrs.json"
      sleep 0.2 &
    '' ];
  };
in
{
  inherit data exe link lib app graphText graphJSON;
}
