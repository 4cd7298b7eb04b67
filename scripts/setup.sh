#!/usr/bin/env bash
# Installs everything qforge needs to build and test on Debian 12. Idempotent: packages
# already present are not reinstalled, and llama.cpp's prebuilt libraries (the arbiter
# the interop tests compare against) are fetched from npm only once.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libfmt-dev nlohmann-json3-dev libcli11-dev libsentencepiece-dev
  libgtest-dev libbenchmark-dev libomp-dev
  libeigen3-dev                    # Cholesky factor of the calibration statistics (quantize --calibrate)
  clang libclang-rt-14-dev         # libFuzzer targets for the GGUF / safetensors parsers
  help2man                         # the man page, made from the binary's --help texts
  dpkg-dev                         # make deb: dpkg-shlibdeps derives the package's dependencies
  libcpp-httplib-dev               # qforge serve
)
# The browser test of qforge serve's page (tests/install/serve_test.py browser) needs these; when
# they cannot be installed, setup goes on and that test reports itself skipped.
BROWSER_PACKAGES=(chromium chromium-driver python3-selenium)

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
# install_missing WHY PACKAGE...: apt-get installs those not installed yet; returns its status.
install_missing() {
  local why="$1" missing=() p
  shift
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "setup: installing ${missing[*]}${why}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
install_missing "" "${PACKAGES[@]}"
install_missing " (for the browser test)" "${BROWSER_PACKAGES[@]}" ||
  echo "setup: could not install ${BROWSER_PACKAGES[*]}: the browser test (serve_browser) will be skipped"

# npm (for the llama.cpp arbiter libraries): the machine's Node.js if present, else Debian's.
if ! command -v npm >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

# llama.cpp 0.5.0-dev (commit de3ff815) prebuilt CPU libraries, as shipped by node-llama-cpp.
LLAMA_PKG="@node-llama-cpp/linux-x64@3.22.1"
LLAMA_DIR=".cache/llama.cpp"
if [ ! -f "$LLAMA_DIR/package/bins/linux-x64/libllama.v0.5.0.so" ]; then
  echo "setup: fetching $LLAMA_PKG"
  rm -rf "$LLAMA_DIR" && mkdir -p "$LLAMA_DIR"
  (cd "$LLAMA_DIR" && npm pack --silent "$LLAMA_PKG" >/dev/null && tar xzf node-llama-cpp-linux-x64-3.22.1.tgz && rm -f ./*.tgz)
fi
echo "setup: ok"
