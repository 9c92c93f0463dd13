# Checks an image made by make-ext4-fs.nix against what went into it, with
# e2fsprogs and Nix rather than with mkext4fs itself:
#   - e2fsck finds nothing to fix; the label is the one asked for;
#   - /nix/store holds exactly the closure of storePaths, every entry equal to
#     the store's (content, type, permission bits, symlink target), owned by
#     root, and /nix/store itself is 1775 root:30000;
#   - the root holds exactly lost+found, nix, nix-path-registration and what
#     populateImageCommands makes (run again here), equal to it;
#   - nix-store --load-db accepts the registration into a store made from the
#     image, the registered closure of storePaths is the closure, and
#     nix-store --verify --check-contents re-hashes every path and agrees;
#   - and, when mkext4fs is given, `mkext4fs verify` agrees too.
# The output is a small report.
{
  lib,
  runCommand,
  e2fsprogs,
  zstd,
  nix,
  image,
  storePaths ? image.storePaths,
  volumeLabel ? "NIXOS_SD",
  populateImageCommands ? "",
  # The package whose `verify` to run as well; null: none.
  mkext4fs ? null,
}:

let
  # The text form of exportReferencesGraph: one name per root.
  graph = builtins.concatLists (
    builtins.genList (i: [
      "closure-${toString i}"
      (builtins.elemAt storePaths i)
    ]) (builtins.length storePaths)
  );
in
runCommand "${image.name}-check"
  {
    nativeBuildInputs = [
      e2fsprogs
      zstd
      nix
    ];
    exportReferencesGraph = graph;
    inherit image;
    roots = storePaths;
  }
  ''
    fail() { echo "check-image: $*" >&2; exit 1; }

    img=$image
    case $img in
      *.zst)
        img=$PWD/image.img
        zstd -d -q -o "$img" "$image"
        ;;
    esac
    [ -f "$img" ] || fail "$img is not a file"

    e2fsck -fn "$img" > e2fsck.log 2>&1 || { cat e2fsck.log >&2; fail "e2fsck -fn found problems"; }
    label=$(dumpe2fs -h "$img" 2>/dev/null | sed -n 's/^Filesystem volume name: *//p')
    [ "$label" = ${lib.escapeShellArg volumeLabel} ] || fail "label is '$label'"

    # The closure, from the graph files: path, deriver, count, references.
    for g in closure-*; do
      while read -r path && read -r _deriver && read -r count; do
        for ((i = 0; i < count; i++)); do read -r _; done
        echo "$path"
      done < "$g"
    done | sort -u > closure
    [ -s closure ] || fail "empty closure"

    # What populateImageCommands puts at the root of the image.
    (
      mkdir -p ./files
      ${populateImageCommands}
    )

    mkdir root
    debugfs -R "rdump / $PWD/root" "$img" 2> rdump.log
    # Without root (in a sandbox) rdump cannot chown; owners are checked below.
    if grep -v -e '^debugfs [0-9.]* ' -e 'while changing ownership of' rdump.log | grep -q .; then
      cat rdump.log >&2
      fail "debugfs rdump reported errors"
    fi

    # Type, permission bits and symlink target of every entry under $1.
    listing() { (cd "$1" && find . -printf '%p %y %m %l\n' | LC_ALL=C sort); }

    # The store: exactly the closure, every entry as in the real store.
    (cd root/nix/store && ls -A) | sed "s|^|$NIX_STORE/|" | sort > in-image
    diff -u closure in-image || fail "/nix/store in the image is not the closure"
    while read -r p; do
      if [ -d "$p" ] && [ ! -L "$p" ]; then
        [ "$(listing "$p")" = "$(listing "root$p")" ] || {
          diff -u <(listing "$p") <(listing "root$p") >&2 || true
          fail "$p: entries differ"
        }
        diff -r --no-dereference "$p" "root$p" >&2 || fail "$p: contents differ"
      else
        [ "$(stat -c '%F %a' "$p")" = "$(stat -c '%F %a' "root$p")" ] || fail "$p: type or mode differs"
        if [ -L "$p" ]; then
          [ "$(readlink "$p")" = "$(readlink "root$p")" ] || fail "$p: symlink target differs"
        else
          cmp "$p" "root$p" || fail "$p: content differs"
        fi
      fi
    done < closure

    # Owners, as debugfs records them (rdump cannot chown without root).
    debugfs -R "ls -p /nix" "$img" 2>/dev/null | grep '/store/' > nix.ls
    grep -q '^/[0-9]*/041775/0/30000/store/' nix.ls || fail "/nix/store: $(cat nix.ls)"
    debugfs -R "ls -p /nix/store" "$img" 2>/dev/null | awk -F/ '/^\// && $6 != "." && $6 != ".." && ($4 != 0 || $5 != 0)' > owners
    [ ! -s owners ] || fail "store paths not owned by root: $(cat owners)"

    # The root: lost+found, nix, the registration, and ./files.
    { printf '%s\n' lost+found nix nix-path-registration; (cd files && ls -A); } | sort > want-top
    (cd root && ls -A) | sort > got-top
    diff -u want-top got-top || fail "unexpected entries at the root of the image"
    for f in files/*; do
      [ -e "$f" ] || continue
      name=''${f#files/}
      [ "$(listing "$f")" = "$(listing "root/$name")" ] || fail "/$name differs from ./files/$name"
      diff -r --no-dereference "$f" "root/$name" >&2 || fail "/$name: contents differ"
    done
    [ "$(stat -c %a root/nix-path-registration)" = 444 ] || fail "nix-path-registration is not 0444"

    # The registration, judged by Nix.
    nix-store --store "$PWD/root" --load-db < root/nix-path-registration
    nix-store --store "$PWD/root" --verify --check-contents > verify.log 2>&1 || {
      cat verify.log >&2
      fail "nix-store --verify --check-contents failed"
    }
    if grep -Eq 'modified|error' verify.log; then
      cat verify.log >&2
      fail "nix-store --verify --check-contents complained"
    fi
    nix-store --store "$PWD/root" -qR $roots | sort > registered
    diff -u closure registered || fail "the registered closure differs from the closure"

    ${lib.optionalString (mkext4fs != null) ''
      ${mkext4fs}/bin/mkext4fs verify --files "$PWD/files" "$img" closure-* > mkext4fs-verify.log 2>&1 || {
        cat mkext4fs-verify.log >&2
        fail "mkext4fs verify found differences"
      }
    ''}
    {
      echo "image: $image"
      echo "paths: $(wc -l < closure)"
      echo "checked: e2fsck, label, store contents and modes, owners, root entries, registration${lib.optionalString (mkext4fs != null) ", mkext4fs verify"}"
    } > "$out"
  ''
