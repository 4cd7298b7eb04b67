#!/usr/bin/env bash
# CI step (.ci/run): builds the Debian package, installs it with apt, runs `qforge --version` and
# the demo from /usr/bin/qforge in a temp folder, removes the package and checks that nothing of
# it is left (dpkg knows no file of it, every file it installed is gone). Needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${BUILD:-build}"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
fail() { echo "check-deb: FAIL: $*" >&2; exit 1; }

if dpkg-query -W -f='${Status}' qforge 2>/dev/null | grep -q "install ok installed"; then
    fail "a qforge package is already installed; remove it first (apt-get remove qforge)"
fi
rm -f "$BUILD"/qforge_*.deb
make deb BUILD="$BUILD" >/dev/null
deb="$(ls "$BUILD"/qforge_*.deb)"
echo "check-deb: $deb, $(stat -c %s "$deb") bytes"
dpkg-deb -f "$deb" Package Version Architecture Depends Installed-Size
dpkg-deb -f "$deb" Depends | grep -q "libc6" || fail "Depends has no libc6: dpkg-shlibdeps did not run"

$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "./$deb" >/dev/null
trap '$SUDO apt-get remove -y -qq qforge >/dev/null 2>&1 || true' EXIT
dpkg -L qforge >"${TMPDIR:-/tmp}/qforge-deb-files"
files=$(while read -r f; do [ -f "$f" ] && echo "$f"; done <"${TMPDIR:-/tmp}/qforge-deb-files")
echo "check-deb: installed files:"; echo "$files" | sed 's/^/  /'
for f in /usr/bin/qforge /usr/share/man/man1/qforge.1.gz /usr/share/bash-completion/completions/qforge; do
    echo "$files" | grep -qx "$f" || fail "$f is not in the package"
done

/usr/bin/qforge --version
demo="$(mktemp -d)"
cp -r models/prose-tiny "$demo/"
(
    cd "$demo"
    /usr/bin/qforge convert prose-tiny -o prose-tiny-f16.gguf
    /usr/bin/qforge quantize prose-tiny prose-tiny-Q4_K_M.gguf Q4_K_M
    /usr/bin/qforge inspect prose-tiny-Q4_K_M.gguf | tail -3
    /usr/bin/qforge plan prose-tiny-f16.gguf --gpu 3060 -c 1024 | head -4
    /usr/bin/qforge plan prose-tiny --gpu 4090 -c 2048 | grep -q "NVIDIA GeForce RTX 4090"
) || fail "the demo failed from /usr/bin/qforge"
rm -rf "$demo"
man -l /usr/share/man/man1/qforge.1.gz 2>/dev/null | head -3 || true

$SUDO env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq qforge >/dev/null
trap - EXIT
[ -z "$(dpkg -L qforge 2>/dev/null)" ] || fail "dpkg still lists files of qforge"
dpkg-query -W -f='${Status}' qforge 2>/dev/null | grep -q "installed" && fail "qforge is still installed"
while read -r f; do
    [ -f "$f" ] && fail "$f is left after removal"
done <<<"$files"
[ -e /usr/bin/qforge ] && fail "/usr/bin/qforge is left"
echo "check-deb: ok (installed, ran the demo, removed without a trace)"
