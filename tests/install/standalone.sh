#!/usr/bin/env bash
# The built qforge needs nothing but itself: it is copied into an empty temp folder and run from
# another working directory with an empty environment (QFORGE_DATA_DIR empty, HOME and
# XDG_CONFIG_HOME pointing at empty folders) and, where the kernel allows a private mount
# namespace, with the source tree hidden under an empty tmpfs. Its outputs for plan --gpu 4090,
# quantize, inspect and --list-gpus must equal the build-tree binary's on the same inputs; a
# user hardware.json in $XDG_CONFIG_HOME/qforge must then extend the built-in catalogue.
# Usage: standalone.sh BUILT_QFORGE SOURCE_DIR
set -euo pipefail
bin="$(readlink -f "$1")"
src="$(cd "$2" && pwd)"
tmp="$(mktemp -d /tmp/qforge-standalone.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/models" "$tmp/ref" "$tmp/alone" "$tmp/home" "$tmp/config"
cp "$bin" "$tmp/bin/qforge"
cp -r "$src/models/prose-tiny" "$tmp/models/"
fail() { echo "FAIL: $*" >&2; exit 1; }

# No data location from the source tree may be compiled in (a cheap check: the compiler may
# also build a short path from immediates; hiding the tree below is the real proof).
if grep -aqF "$src/data" "$tmp/bin/qforge"; then fail "the binary contains the path $src/data"; fi

clean_env=(env -i PATH=/usr/bin:/bin HOME="$tmp/home" XDG_CONFIG_HOME="$tmp/config" QFORGE_DATA_DIR=)
hide=0
if unshare -m true 2>/dev/null; then hide=1; else echo "note: no private mount namespace here (unshare -m refused): the source tree stays visible"; fi
# alone DIR ARGS...: the copied binary, from $tmp/DIR, source tree hidden where possible.
alone() {
    local dir="$1"; shift
    if [ "$hide" = 1 ]; then
        (cd "$tmp/$dir" && "${clean_env[@]}" unshare -m sh -c 'mount -t tmpfs qforge-hidden "$0" && exec "$@"' "$src" "$tmp/bin/qforge" "$@")
    else
        (cd "$tmp/$dir" && "${clean_env[@]}" "$tmp/bin/qforge" "$@")
    fi
}
ref() { local dir="$1"; shift; (cd "$tmp/$dir" && "${clean_env[@]}" "$bin" "$@"); }
if [ "$hide" = 1 ]; then
    "${clean_env[@]}" unshare -m sh -c 'mount -t tmpfs qforge-hidden "$0" && test ! -e "$0/data/hardware.json"' "$src" ||
        fail "hiding the source tree did not work"
fi

# same NAME ARGS...: both binaries, same relative inputs; durations ("in 0.09 s") dropped.
same() {
    local name="$1"; shift
    ref ref "$@" | sed -E 's/ in [0-9.]+ s$//' >"$tmp/$name.ref" || fail "$name: the build-tree binary failed"
    alone alone "$@" | sed -E 's/ in [0-9.]+ s$//' >"$tmp/$name.alone" || fail "$name: the copied binary failed"
    [ -s "$tmp/$name.ref" ] || fail "$name: no output"
    cmp -s "$tmp/$name.ref" "$tmp/$name.alone" || { diff "$tmp/$name.ref" "$tmp/$name.alone" | head -20; fail "$name: outputs differ"; }
    echo "ok: $name ($(wc -l <"$tmp/$name.ref") lines equal)"
}

same version --version
same plan plan ../models/prose-tiny --gpu 4090 -c 2048
grep -q "NVIDIA GeForce RTX 4090" "$tmp/plan.alone" || fail "plan: no RTX 4090 row"
same quantize quantize ../models/prose-tiny prose-tiny-Q4_K_M.gguf Q4_K_M
cmp "$tmp/ref/prose-tiny-Q4_K_M.gguf" "$tmp/alone/prose-tiny-Q4_K_M.gguf" || fail "quantize: files differ"
same inspect inspect prose-tiny-Q4_K_M.gguf
same plan-gguf plan prose-tiny-Q4_K_M.gguf --gpu 4090 --json
same plan-catalogue plan Llama-3.1-8B-Instruct --gpu 4090 -c 8192
same list-gpus plan --list-gpus
grep -q "^hardware catalogue: built-in (" "$tmp/list-gpus.alone" || fail "--list-gpus: not from the built-in catalogue"

# A user catalogue in $XDG_CONFIG_HOME/qforge/hardware.json: one new device, one replaced.
mkdir -p "$tmp/config/qforge"
cat >"$tmp/config/qforge/hardware.json" <<'JSON'
{"devices": [
  {"name": "Test Accelerator 77", "kind": "gpu", "vendor": "test", "memory_bytes": 8589934592, "bandwidth_gbs": 123, "source": "standalone.sh"},
  {"name": "NVIDIA GeForce RTX 4090", "kind": "gpu", "vendor": "nvidia", "memory_bytes": 17179869184, "bandwidth_gbs": 1008, "source": "standalone.sh"}
]}
JSON
alone alone plan --list-gpus >"$tmp/list-user"
grep -q "^hardware catalogue: built-in (.*), $tmp/config/qforge/hardware.json (2 devices in use)" "$tmp/list-user" ||
    fail "--list-gpus does not name the user file: $(head -1 "$tmp/list-user")"
grep -E "^Test Accelerator 77 .* 8\.00 GiB .*$tmp/config/qforge/hardware.json$" -q "$tmp/list-user" || fail "new device not listed with its file"
grep -E "^NVIDIA GeForce RTX 4090 .*16\.00 GiB .*$tmp/config/qforge/hardware.json$" -q "$tmp/list-user" || fail "replaced device not listed with its file"
[ "$(grep -c '^NVIDIA GeForce RTX 4090 ' "$tmp/list-user")" = 1 ] || fail "the replaced device is listed twice"
alone alone plan ../models/prose-tiny --gpu 'test accelerator 77' -c 2048 | grep -q "Test Accelerator 77 (8.00 GiB usable, 123 GB/s)" ||
    fail "plan --gpu does not find the user's device"
echo "standalone: ok"
