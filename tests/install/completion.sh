#!/usr/bin/env bash
# dist/qforge.bash-completion, driven as bash drives it (COMP_WORDS/COMP_CWORD, then _qforge),
# against the built binary: subcommands, options, file types, KV types, GPUs (also after a comma).
# Usage: completion.sh BUILT_QFORGE SOURCE_DIR
set -euo pipefail
bin="$(readlink -f "$1")"
source "$2/dist/qforge.bash-completion"
fail() { echo "FAIL: $*" >&2; exit 1; }
# expect "WORDS..." -- WANTED...: completing the last word offers every WANTED word.
expect() {
    local words=() wanted=()
    while [ "$1" != "--" ]; do words+=("$1"); shift; done
    shift
    COMP_WORDS=("$bin" "${words[@]}")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMPREPLY=()
    _qforge || true  # compgen fails when a list has no match; bash ignores that
    for w in "$@"; do
        printf '%s\n' "${COMPREPLY[@]}" | grep -qxF -- "$w" || fail "'qforge ${words[*]}<TAB>' does not offer '$w' (got: ${COMPREPLY[*]:0:12})"
    done
    echo "ok: qforge ${words[*]}<TAB> -> ${COMPREPLY[*]:0:6}"
}
expect "" -- convert inspect plan quantize eval imatrix --version
expect pl -- plan
expect plan x --li -- --list-gpus
expect plan x -c 1 -ct -- -ctk -ctv
expect quantize m.gguf Q4_K -- Q4_K_M Q4_K_S
expect plan x --type Q8_0,Q5 -- Q8_0,Q5_K_M Q8_0,Q5_0
expect plan x -ctk q8 -- q8_0
expect plan x --gpu RTX-409 -- RTX-4090
expect plan x --gpu RTX-4090,M3-Max -- RTX-4090,M3-Max-64GB
# nothing hidden leaks into the subcommands
COMP_WORDS=("$bin" "__"); COMP_CWORD=1; _qforge || true
[ ${#COMPREPLY[@]} -eq 0 ] || fail "the hidden __complete command is offered"
echo "completion: ok"
