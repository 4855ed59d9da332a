#!/bin/bash
# clformer: loss curves of the precision modes (issue 14's correctness run). Trains each config on
# the wiki shards (data/wiki, tools/prepare_wiki.sh) for STEPS steps in fp32 and in each reduced
# precision from the same initialisation and the same batches (same seed), evaluating every
# EVAL steps, one JSON log per run in OUT; then bench/plot_precision_curves.py OUT writes
# OUT/precision_curves.png and prints the final validation losses against fp32's.
#   bench/precision_curves.sh DEVICE OUT [STEPS [EVAL [PRECISIONS [CONFIGS]]]]
# e.g. bench/precision_curves.sh nvidia bench/results/h100/precision_curves
#      bench/precision_curves.sh cpu /tmp/pc 500 50 fp32,bf16 wiki_cache_optimized
set -eu
DEV=$1 OUT=$2 STEPS=${3:-500} EVAL=${4:-50} PRECS=${5:-fp32,bf16,fp16}
CONFIGS=${6:-wiki_cache_optimized,wiki_llama}
CLF=${CLF:-build/clformer}
mkdir -p "$OUT"
for c in ${CONFIGS//,/ }; do
  for p in ${PRECS//,/ }; do
    rm -rf "$OUT/run_${c}_$p"
    "$CLF" train "configs/$c.json" --device "$DEV" --precision "$p" steps="$STEPS" \
        eval_interval="$EVAL" checkpoint_interval=0 log_interval=10 \
        --out "$OUT/run_${c}_$p" --log "$OUT/${c}_$p.jsonl" > "$OUT/${c}_$p.txt" 2>&1
    rm -rf "$OUT/run_${c}_$p"
    echo "$c $p: $(grep -o '"val_loss": [0-9.]*' "$OUT/${c}_$p.jsonl" | tail -1)"
  done
done
python3 bench/plot_precision_curves.py "$OUT" || echo "(plot skipped: python3-matplotlib missing?)"
