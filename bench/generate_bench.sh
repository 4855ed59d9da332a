#!/bin/bash
# clformer: generation speed rows for BENCHMARKS.md (issue 15): `clformer bench --generate` for
# wiki_cache_optimized and wiki_llama (random weights, max_length=384 so that prompt 128 + 256 new
# tokens fit the learned positions) at batch 1 and 32, fp32 and int8, one JSON line per row.
#   bench/generate_bench.sh DEVICE OUT.jsonl [PROMPT NEW [BATCHES]]
# e.g. bench/generate_bench.sh cpu bench/results/infer/cpu.jsonl
#      bench/generate_bench.sh opencl bench/results/infer/pocl.jsonl 32 64
#      bench/generate_bench.sh auto bench/results/infer/h100.jsonl
set -eu
DEV=$1 OUT=$2 P=${3:-128} N=${4:-256} BATCHES=${5:-1,32}
CLF=${CLF:-build/clformer}
: > "$OUT"
for c in wiki_cache_optimized wiki_llama; do
  "$CLF" bench --generate "configs/$c.json" max_length=384 --device "$DEV" --batch "$BATCHES" \
      --prompt-len "$P" --new "$N" --json | sed "s/^{/{\"config\":\"$c\",/" | tee -a "$OUT"
done
