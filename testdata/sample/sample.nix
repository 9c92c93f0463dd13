# The sample closure shipped in testdata/sample: a "hello" script package
# that depends on a "libhello" shell library, which depends on a "greeting"
# data package. Built with the host's /bin/sh and coreutils, so no nixpkgs is
# needed; regenerate.sh builds it and copies the result here.
#
# The system is fixed so that the store paths, and so the files shipped in
# the repository, are the same wherever it is regenerated (on x86_64-linux).
{ system ? "x86_64-linux" }:
let
  # The short background sleep keeps Nix 2.8 from killing a builder that
  # is just exiting ("signal 9").
  build = name: script: extra: derivation ({
    inherit name system;
    builder = "/bin/sh";
    args = [ "-c" "set -eu\n${script}\nsleep 0.2 &" ];
    PATH = "/usr/bin:/bin";
  } // extra);

  greeting = build "greeting-1.0" ''
    d=$out/share/greeting
    mkdir -p "$d/regional" "$out/share/doc/greeting"
    printf 'Hello, world!\n' > "$d/en.txt"
    printf 'Hallo, Welt!\n' > "$d/de.txt"
    printf 'Bonjour, le monde !\n' > "$d/fr.txt"
    printf '¡Hola, mundo!\n' > "$d/es.txt"
    printf 'Ciao, mondo!\n' > "$d/it.txt"
    printf 'Hallo, wereld!\n' > "$d/nl.txt"
    printf 'Olá, mundo!\n' > "$d/pt.txt"
    printf 'Hej, världen!\n' > "$d/sv.txt"
    printf 'こんにちは、世界！\n' > "$d/ja.txt"
    printf 'Howdy, world!\n' > "$d/regional/en-US.txt"
    printf 'Good day, world!\n' > "$d/regional/en-GB.txt"
    printf 'One greeting per language, named by its code.\n' > "$d/README with spaces.txt"
    printf 'The greetings are in the public domain.\n' > "$out/share/doc/greeting/COPYING"
  '' { };

  libhello = build "libhello-1.0" ''
    mkdir -p "$out/lib/pkgconfig" "$out/include" "$out/share/doc/libhello" "$out/nix-support"
    cat > "$out/lib/libhello-1.0.sh" <<EOS
    # Shell functions of the sample hello.
    greeting_dir=${greeting}/share/greeting
    hello_main() {
    	cat "\$greeting_dir/\''${1:-en}.txt"
    }
    EOS
    ln -s libhello-1.0.sh "$out/lib/libhello.sh"
    printf 'prefix=%s\nName: libhello\nVersion: 1.0\n' "$out" > "$out/lib/pkgconfig/libhello.pc"
    printf '/* nothing to include: libhello is a shell library */\n' > "$out/include/hello.h"
    ln -s ${greeting}/share/greeting "$out/share/greeting"
    : > "$out/share/doc/libhello/EMPTY"
    printf '%s\n' ${greeting} > "$out/nix-support/propagated-build-inputs"
  '' { };

  hello = build "hello-2.0" ''
    mkdir -p "$out/bin" "$out/libexec/hello" "$out/share/man/man1" "$out/share/doc/hello"
    printf '#!/bin/sh\n. ${libhello}/lib/libhello.sh\nhello_main "$@"\n' > "$out/bin/hello"
    printf '#!/bin/sh\nexec %s/bin/hello "$@"\n' "$out" > "$out/libexec/hello/hello-wrapper"
    chmod 0555 "$out/bin/hello" "$out/libexec/hello/hello-wrapper"
    ln -s hello "$out/bin/hi"
    printf '.TH HELLO 1\n.SH NAME\nhello \\- print a greeting\n' > "$out/share/man/man1/hello.1"
    printf 'hello prints a greeting in the language given as its argument.\n' > "$out/share/doc/hello/README"
    printf '2.0: greetings moved to their own package.\n' > "$out/share/doc/hello/NEWS"
  '' { };

  # The graph files of hello's closure, in the two forms Nix writes.
  graphText = build "sample-graph-text" ''
    mkdir "$out"
    cp closure "$out/closure"
  '' { exportReferencesGraph = [ "closure" hello ]; };

  graphJSON = derivation {
    name = "sample-graph-json";
    inherit system;
    builder = "/bin/bash";
    __structuredAttrs = true;
    exportReferencesGraph.closure = [ hello ];
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
  inherit greeting libhello hello graphText graphJSON;
}
