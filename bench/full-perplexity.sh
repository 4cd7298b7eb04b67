#!/usr/bin/env bash
# llama.cpp's perplexity over ALL of ../shared/text/valid.txt (522 chunks of 512) on the
# files `qforge convert` writes from both prose models (f32, f16, bf16), compared with the
# models' metrics.json. Takes tens of minutes on 2 cores, hence not part of `make test`
# (which checks the 16-chunk prefix against metrics.json's valid_prefix figure).
set -euo pipefail
cd "$(dirname "$0")/.."
make build >/dev/null
QFORGE_FULL_PERPLEXITY=1 QFORGE_TEST_THREADS=${QFORGE_TEST_THREADS:-$(nproc)} \
  build/tests/qforge_interop --gtest_filter='ConvertFull.*' "$@"
