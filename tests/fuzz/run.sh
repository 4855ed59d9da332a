#!/bin/bash
# clformer: build the libFuzzer targets of tests/fuzz with clang (-fsanitize=fuzzer,address,
# undefined) and run each for a bounded time on a copy of its seed corpus (tests/fuzz/corpus/<t>,
# which also holds the regression input of every finding). Fails on any crash, leak, sanitizer
# report or timeout; exits 77 (skipped) when clang, libFuzzer or clang's OpenMP runtime is missing.
#   usage: run.sh SOURCE_DIR BUILD_DIR [TARGET...]
#   CF_FUZZ_SECONDS: seconds per target (default 55; 0 only replays the corpus)
#   CF_FUZZ_JOBS: build parallelism (default 2)
set -u
SRC=${1:?usage: run.sh SOURCE_DIR BUILD_DIR [TARGET...]}
OUT=${2:?usage: run.sh SOURCE_DIR BUILD_DIR [TARGET...]}/fuzz-build
shift 2
TARGETS=${*:-config safetensors shard tokenizer tuning}
SECS=${CF_FUZZ_SECONDS:-55}
CC_FUZZ=${CF_FUZZ_CC:-clang}

if ! command -v "$CC_FUZZ" >/dev/null 2>&1; then
  echo "SKIP: $CC_FUZZ not found (tools/install_deps.sh installs clang)"; exit 77
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf '#include <stdint.h>\n#include <stddef.h>\n#include <omp.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return (int)(n & 0) + omp_get_max_threads() * 0; }\n' > "$probe/p.c"
if ! "$CC_FUZZ" -fopenmp -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" >"$probe/log" 2>&1; then
  echo "SKIP: $CC_FUZZ cannot build a libFuzzer target with OpenMP (needs libclang-rt-14-dev and libomp-dev):"
  tail -3 "$probe/log"; exit 77
fi

mkdir -p "$OUT"
if ! CC=$CC_FUZZ cmake -S "$SRC" -B "$OUT" -DCF_FUZZ=ON -DCF_TESTS=OFF -DCF_CLBLAST=OFF -DCF_BLAS=OFF \
     -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$OUT/configure.log" 2>&1; then
  echo "FAIL: configuring the fuzz build failed:"; tail -20 "$OUT/configure.log"; exit 1
fi
list=""
for t in $TARGETS; do list="$list fuzz_$t"; done
if ! cmake --build "$OUT" -j"${CF_FUZZ_JOBS:-2}" --target $list >"$OUT/build.log" 2>&1; then
  echo "FAIL: building the fuzz targets failed:"; grep -E "error" "$OUT/build.log" | head -20; exit 1
fi

fail=0
for t in $TARGETS; do
  seeds="$SRC/tests/fuzz/corpus/$t"
  work="$OUT/corpus_$t"
  art="$OUT/artifacts_$t"
  rm -rf "$art"; mkdir -p "$work" "$art"
  # 1. every seed and regression input, once
  if ! "$OUT/fuzz_$t" -runs=0 -rss_limit_mb=2048 -timeout=20 -artifact_prefix="$art/" \
       "$seeds" >"$OUT/$t.replay.log" 2>&1; then
    echo "FAIL: fuzz_$t crashes on its corpus ($seeds):"; tail -30 "$OUT/$t.replay.log"; fail=1; continue
  fi
  # 2. bounded fuzzing from the corpus (new inputs go to the build tree, not the repository)
  if [ "$SECS" -gt 0 ]; then
    if ! "$OUT/fuzz_$t" -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
         -artifact_prefix="$art/" "$work" "$seeds" >"$OUT/$t.log" 2>&1; then
      echo "FAIL: fuzz_$t found a crash in ${SECS} s; input(s) in $art:"; ls "$art"
      grep -E "ERROR|SUMMARY|runtime error" "$OUT/$t.log" | head -5
      tail -40 "$OUT/$t.log"; fail=1; continue
    fi
  fi
  echo "ok: fuzz_$t $(grep -E '^stat::number_of_executed_units' "$OUT/$t.log" 2>/dev/null | awk '{print $2}') runs in ${SECS} s, corpus $(ls "$work" | wc -l) inputs"
done
exit $fail
