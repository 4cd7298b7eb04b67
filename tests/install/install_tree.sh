#!/usr/bin/env bash
# `cmake --install` into an empty prefix puts exactly three files there: bin/qforge, the man
# page and the bash completion. The man page holds the help of every subcommand the binary
# lists (`qforge __complete commands`) and every option of each (`__complete options CMD`),
# so a CLI change that the page does not show fails here. The installed binary runs.
# Usage: install_tree.sh BUILD_DIR
set -euo pipefail
build="$(cd "$1" && pwd)"
tmp="$(mktemp -d /tmp/qforge-install.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$tmp/usr" >/dev/null
(cd "$tmp/usr" && find . -type f | sort) >"$tmp/files"
printf '%s\n' ./bin/qforge ./share/bash-completion/completions/qforge ./share/man/man1/qforge.1.gz >"$tmp/expected"
diff "$tmp/expected" "$tmp/files" || fail "installed files differ from the expected three"

q="$tmp/usr/bin/qforge"
"$q" --version | head -1 | grep -qx "qforge [0-9.]*" || fail "--version: first line is not 'qforge VERSION'"
zcat "$tmp/usr/share/man/man1/qforge.1.gz" >"$tmp/page"
grep -q '^\.TH QFORGE "1"' "$tmp/page" || fail "man page: no .TH header"
grep -q '^qforge \\- quantize, plan and evaluate' "$tmp/page" || fail "man page: no NAME line"
n=0
for cmd in $("$q" __complete commands); do
    grep -qF ".SS \"qforge $cmd\"" "$tmp/page" || fail "man page: no section for '$cmd'"
    for opt in $("$q" __complete options "$cmd"); do
        case "$opt" in -ctk|-ctv|-np|-ub|-ngl) continue ;; esac  # llama.cpp spellings of --ctk ...
        grep -qF -- "$opt" "$tmp/page" || fail "man page: '$cmd $opt' missing"
        n=$((n + 1))
    done
done
[ "$n" -gt 20 ] || fail "man page: only $n options checked"
grep -qF -- "--list-gpus" "$tmp/page" || fail "man page: --list-gpus missing"
echo "install tree: ok ($n options found in the man page)"
