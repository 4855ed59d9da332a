#!/bin/bash
# clformer: training throughput by precision, clformer against PyTorch on the same model in one
# invocation (the section "Precision" of BENCHMARKS.md).
#
#   bench/precision.sh [--clformer PATH] [--device D] [--torch-device cpu|cuda] [--steps N]
#                      [--warmup N] [--out DIR] [CONFIG ...]
#
# For each config (default configs/wiki_cache_optimized.json configs/wiki_llama.json):
# `clformer bench` with precision fp32, tf32, bf16 and fp16, then bench/pytorch_gpt.py in fp32
# (TF32 off), with TF32 matmuls (--tf32), with bf16 autocast (--amp bf16) and with fp16 autocast
# and a GradScaler (--amp fp16), all with fused AdamW and scaled_dot_product_attention. Writes
# DIR/rows.jsonl and prints a Markdown table: tokens/s of each, and each clformer mode against
# PyTorch's of the same name (bf16 and fp16 against autocast). The peak device memory of every
# run goes into the rows too.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CLF="$ROOT/build/clformer"
DEVICE=auto
TORCH_DEVICE=cuda
STEPS=30
WARMUP=5
OUT="$ROOT/runs/precision"
CONFIGS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --clformer) CLF=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --torch-device) TORCH_DEVICE=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) echo "precision.sh: unknown option '$1'; see --help" >&2; exit 2 ;;
    *) CONFIGS="$CONFIGS $1"; shift ;;
  esac
done
[ -n "$CONFIGS" ] || CONFIGS="$ROOT/configs/wiki_cache_optimized.json $ROOT/configs/wiki_llama.json"
mkdir -p "$OUT"
ROWS="$OUT/rows.jsonl"
: > "$ROWS"
# a field of the JSON object on stdin, or null (a run that failed or printed no JSON)
py_field() { python3 -c "
import json, sys
try: d = json.loads(sys.stdin.read() or '{}')
except ValueError: d = {}
v = d.get('$1')
print('null' if v is None else v)"; }
for cfg in $CONFIGS; do
  name=$(basename "$cfg" .json)
  for p in fp32 tf32 bf16 fp16; do
    js=$("$CLF" bench "$cfg" --device "$DEVICE" --steps "$STEPS" --warmup "$WARMUP" --json precision=$p 2>/dev/null | tail -1)
    echo "{\"config\":\"$name\",\"tool\":\"clformer\",\"mode\":\"$p\",\"tokens_per_s\":$(echo "$js" | py_field tokens_per_s),\"peak_bytes\":$(echo "$js" | py_field peak_device_bytes)}" >> "$ROWS"
  done
  for m in fp32 tf32 bf16 fp16; do
    case $m in fp32) fl="" ;; tf32) fl="--tf32" ;; bf16) fl="--amp bf16" ;; fp16) fl="--amp fp16" ;; esac
    js=$(python3 "$HERE/pytorch_gpt.py" --config "$cfg" --device "$TORCH_DEVICE" --steps "$STEPS" --warmup "$WARMUP" --json $fl 2>/dev/null | tail -1)
    echo "{\"config\":\"$name\",\"tool\":\"pytorch\",\"mode\":\"$m\",\"tokens_per_s\":$(echo "$js" | py_field tokens_per_s),\"peak_bytes\":$(echo "$js" | py_field peak_device_bytes)}" >> "$ROWS"
  done
done
python3 - "$ROWS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["config"], {})[(r["tool"], r["mode"])] = r
modes = ["fp32", "tf32", "bf16", "fp16"]
f = lambda v: f"{v:,.0f}" if v else "failed"
print("| config | mode | clformer tokens/s | PyTorch tokens/s (bf16/fp16: autocast) | clformer / PyTorch | clformer / its fp32 | peak MiB clformer, PyTorch |")
print("|---|---|---|---|---|---|---|")
for c, d in by.items():
    cf32 = (d.get(("clformer", "fp32")) or {}).get("tokens_per_s")
    for m in modes:
        a = d.get(("clformer", m)) or {}
        b = d.get(("pytorch", m)) or {}
        ta, tb = a.get("tokens_per_s"), b.get("tokens_per_s")
        mib = lambda r: f"{r['peak_bytes'] / 2**20:,.0f}" if r.get("peak_bytes") else "?"
        print(f"| {c} | {m} | {f(ta)} | {f(tb)} | {f'{ta / tb:.2f}x' if ta and tb else ''} | "
              f"{f'{ta / cf32:.2f}x' if ta and cf32 else ''} | {mib(a)}, {mib(b)} |")
PY
