#!/bin/bash
# clformer: the "Time to loss" benchmark (issue 18, BENCHMARKS.md "Time to loss"): wall time and
# training tokens until the periodic validation loss of configs/wiki_cache_optimized.json on the
# wiki shards reaches TARGET (default 5.25), evaluating every 25 steps.
#
#   bench/time_to_loss.sh DEVICE OUT.jsonl [TARGET] [pair|ablation|all]
#
# DEVICE: cpu (PyTorch on the CPU with the same thread count, OMP_NUM_THREADS or all cores) or an
# OpenCL device for clformer (e.g. nvidia; PyTorch then runs on cuda).
#   pair      clformer against PyTorch (bench/pytorch_time_to_loss.py: same model, initialisation,
#             data order, optimizer and schedule), fp32; on a GPU also both with TF32
#   ablation  clformer alone: GPT-2/AdamW, then each recipe element added in turn (RoPE, RMSNorm,
#             QK-norm, ReLU^2, untied head, soft-cap, Muon, WSD), and two side rows (SwiGLU in place
#             of ReLU^2 at equal parameters, Muon alone on GPT-2)
# One JSON line per row: {row, tool, keys, target_reached, step, tokens, wall_time_s, val_loss};
# a row that fails is reported on stderr and the others still run (exit status 1 at the end).
# On an OpenCL device each clformer row runs twice and the second run counts: the first builds the
# device's programs into the kernel cache (what every later run of a user finds there).
# PyTorch runs on the CPU for DEVICE cpu and on cuda otherwise; PT_DEVICE=cpu|cuda overrides (an
# OpenCL CPU device such as PoCL: PT_DEVICE=cpu).
# Needs data/wiki (tools/prepare_wiki.sh) and build/clformer (CLF=... to override); runs from the
# repository root whatever the current directory.
set -eu
USAGE="usage: bench/time_to_loss.sh DEVICE OUT.jsonl [TARGET] [pair|ablation|all]"
DEV=${1:?$USAGE}
OUT=${2:?$USAGE}
TL=${3:-5.25}
WHAT=${4:-all}
case "$WHAT" in pair | ablation | all) ;; *) echo "time_to_loss.sh: '$WHAT' is not pair, ablation or all; $USAGE" >&2; exit 2 ;; esac
python3 -c "import sys; v = float(sys.argv[1]); sys.exit(0 if v > 0 else 1)" "$TL" 2>/dev/null ||
    { echo "time_to_loss.sh: TARGET '$TL' is not a positive number; $USAGE" >&2; exit 2; }
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac
cd "$(dirname "$0")/.."
CLF=${CLF:-build/clformer}
PT_DEVICE=${PT_DEVICE:-$([ "$DEV" = cpu ] && echo cpu || echo cuda)}
FAILED=0
CFG=configs/wiki_cache_optimized.json
EVAL=25
THREADS=${OMP_NUM_THREADS:-$(nproc)}
[ -d data/wiki ] || { echo "time_to_loss.sh: data/wiki is missing: run tools/prepare_wiki.sh first" >&2; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
: > "$OUT"

clf_row() { # NAME KEYS...
    local name=$1
    shift
    local runs=1 i
    [ "$DEV" = cpu ] || runs=2
    for i in $(seq 1 $runs); do
        rm -rf "$TMP/run" "$TMP/log.jsonl"
        "$CLF" train "$CFG" --device "$DEV" --target-loss "$TL" eval_interval=$EVAL \
            checkpoint_interval=1000000 log_interval=1000 --out "$TMP/run" --log "$TMP/log.jsonl" \
            "$@" > "$TMP/err.txt" 2>&1 || { echo "time_to_loss.sh: row $name failed:" >&2; tail -3 "$TMP/err.txt" >&2; FAILED=1; return 0; }
    done
    python3 - "$name" "$*" "$TMP/log.jsonl" >> "$OUT" <<'PY'
import json, sys
name, keys, log = sys.argv[1:4]
rec = [json.loads(l) for l in open(log) if '"target_reached"' in l][-1]
print(json.dumps(dict(row=name, tool="clformer", keys=keys, **rec)))
PY
    tail -1 "$OUT"
}

pt_row() { # NAME [--tf32]
    local name=$1
    shift
    python3 bench/pytorch_time_to_loss.py --config "$CFG" --target-loss "$TL" --device "$PT_DEVICE" \
        --threads "$THREADS" --set eval_interval=$EVAL --json "$@" > "$TMP/pt.json" 2> "$TMP/pt.err" ||
        { echo "time_to_loss.sh: PyTorch row $name failed:" >&2; tail -3 "$TMP/pt.err" >&2; FAILED=1; return 0; }
    if grep -q '^skipped' "$TMP/pt.json"; then echo "PyTorch: $(cat "$TMP/pt.json")"; return 0; fi
    python3 - "$name" "$*" "$TMP/pt.json" >> "$OUT" <<'PY'
import json, sys
name, keys, f = sys.argv[1:4]
rec = json.loads(open(f).read().strip().splitlines()[-1])
print(json.dumps(dict(row=name, tool="pytorch", keys=keys, **rec)))
PY
    tail -1 "$OUT"
}

if [ "$WHAT" = pair ] || [ "$WHAT" = all ]; then
    clf_row baseline
    pt_row baseline
    if [ "$DEV" != cpu ]; then
        clf_row baseline_tf32 --precision tf32
        pt_row baseline_tf32 --tf32
    fi
fi
if [ "$WHAT" = ablation ] || [ "$WHAT" = all ]; then
    A=""
    [ "$WHAT" = all ] || clf_row baseline
    A="position=rope"; clf_row +rope $A
    A="$A norm=rmsnorm"; clf_row +rmsnorm $A
    A="$A qk_norm=true"; clf_row +qk_norm $A
    A="$A mlp=relu2"; clf_row +relu2 $A
    clf_row side_swiglu_for_relu2 $A mlp=swiglu d_ff=1024
    A="$A tie_embeddings=false"; clf_row +untied_head $A
    A="$A logit_softcap=30"; clf_row +softcap $A
    A="$A optimizer=muon"; clf_row +muon $A
    A="$A lr_schedule=wsd"; clf_row +wsd $A
    clf_row side_muon_only optimizer=muon
fi
exit $FAILED
