#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/) with clang + ASan/UBSan and runs each for a
# bounded time (default 30 s) starting from the seed corpus in tests/fuzz/corpus/<target>.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-30}
ls tests/fuzz/*.cpp >/dev/null 2>&1 || { echo "fuzz: no targets"; exit 0; }
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DQFORGE_FUZZ=ON -DQFORGE_SANITIZE=ON -DQFORGE_TESTS=OFF -DQFORGE_BENCH=OFF >/dev/null
targets=$(ls tests/fuzz/*.cpp | xargs -n1 basename | sed 's/\.cpp$//')
cmake --build build-fuzz -j "$(nproc)" --target $targets
for t in $targets; do
  corpus="build-fuzz/corpus/$t"
  mkdir -p "$corpus"
  for seeds in "tests/fuzz/corpus/$t" "tests/fuzz/regressions/$t"; do
    [ -d "$seeds" ] && cp -n "$seeds"/* "$corpus"/ 2>/dev/null || true
  done
  echo "fuzz: $t for ${SECONDS_EACH}s"
  log="build-fuzz/$t.log"
  if ! "build-fuzz/$t" -max_total_time="$SECONDS_EACH" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="build-fuzz/$t-" "$corpus" >"$log" 2>&1; then
    grep -vE '^#[0-9]+' "$log" | tail -n 25
    echo "fuzz: $t FAILED; the input is saved as build-fuzz/$t-crash-* (add it to tests/fuzz/corpus/$t/ once fixed)"
    exit 1
  fi
  grep -E 'stat::number_of_executed_units|stat::new_units_added' "$log" || true
done
echo "fuzz: all targets ran without a crash"
