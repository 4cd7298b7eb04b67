#!/usr/bin/env bash
# The full table of `qforge quantize --calibrate` against llama.cpp (issue: calibrated
# quantization): ../shared's prose-base, every type of the issue, all of calib.txt for both the
# calibration and llama.cpp's imatrix, 40 chunks of valid.txt scored by llama.cpp, and the same
# measured on calib.txt (overfitting check). Runs tests/interop's CalibrateKld test with those
# settings; asserts the issue's bars (0.65x llama.cpp+imatrix for 4-bit types, 0.6x for Q3_K_M
# and Q2_K). Usage: bench/calibrate-kld.sh [MODEL] (default prose-base). Takes ~30 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/tests/qforge_interop ] || make build
QFORGE_CALIB_MODEL="${1:-prose-base}" QFORGE_CALIB_TYPES="${QFORGE_CALIB_TYPES:-Q4_K_M,Q4_K_S,IQ4_XS,Q3_K_M,Q2_K}" \
QFORGE_CALIB_CHUNKS="${QFORGE_CALIB_CHUNKS:-0}" QFORGE_KLD_CHUNKS="${QFORGE_KLD_CHUNKS:-40}" QFORGE_CALIB_OVERFIT=1 \
QFORGE_TEST_THREADS="${QFORGE_TEST_THREADS:-$(nproc)}" \
  build/tests/qforge_interop --gtest_filter='CalibrateKld.*' 2>&1 | grep -E '^\[ calib \]|OK|FAILED|Failure|ratio'
