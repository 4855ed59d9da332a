#!/bin/bash
# clformer: the model family's variants measured side by side in one invocation, for the section
# "What the seeds promised, measured" of BENCHMARKS.md. Every variant is configs/wiki_llama.json
# (d_model 384, 8 heads over 2 KV heads, 4 layers, SwiGLU d_ff 1024, RoPE, RMSNorm, no bias)
# with a few keys changed, so each row differs from the base in one choice:
#
#   llama        the base (GQA 8:2)          mha        num_kv_heads=8 (8:8)
#   mqa          num_kv_heads=1 (8:1)        gelu_eq    mlp=gelu d_ff=1536 (SwiGLU's parameters)
#   gelu_4x      mlp=gelu d_ff=1536 is 4x    gelu_3x    mlp=gelu d_ff=1152 (a 3x MLP)
#   layernorm    norm=layernorm              share2     share_layers=2 (2 blocks over 4 layers)
#   gpt2         GPT-2 of the same width: layernorm, learned positions, GELU 4x, MHA, biases
#
#   bench/family_variants.sh [--clformer PATH] [--device D] [--steps N] [--warmup N]
#                            [--train-steps N] [--torch-device cpu|cuda] [--out DIR] [--only "V ..."]
#
# Tokens/s come from `clformer bench` (random tokens, the real training step). With
# --train-steps N each variant is also trained for N steps on the wiki shards (data/wiki, made by
# tools/prepare_wiki.sh; the same token budget for every variant) and its validation loss
# evaluated with `clformer eval`. With --torch-device, PyTorch (bench/pytorch_gpt.py: SDPA, fp32,
# TF32 off) runs the llama and gpt2 rows in the same invocation, for the ratio.
# Writes DIR/rows.jsonl (one object per measurement) and prints a Markdown table.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CLF="$ROOT/build/clformer"
DEVICE=cpu
STEPS=10
WARMUP=2
TRAIN_STEPS=0
TORCH_DEVICE=""
OUT="$ROOT/runs/family_variants"
ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --clformer) CLF=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --train-steps) TRAIN_STEPS=$2; shift 2 ;;
    --torch-device) TORCH_DEVICE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "family_variants.sh: unknown argument '$1'; see --help" >&2; exit 2 ;;
  esac
done
BASE="$ROOT/configs/wiki_llama.json"
VARIANTS="llama mha mqa gelu_eq gelu_3x layernorm share2 gpt2"
keys_of() {
  case "$1" in
    llama) echo "" ;;
    mha) echo "num_kv_heads=8" ;;
    mqa) echo "num_kv_heads=1" ;;
    gelu_eq) echo "mlp=gelu d_ff=1536" ;;
    gelu_3x) echo "mlp=gelu d_ff=1152" ;;
    layernorm) echo "norm=layernorm" ;;
    share2) echo "share_layers=2" ;;
    gpt2) echo "norm=layernorm position=learned mlp=gelu d_ff=1536 num_kv_heads=8 bias=true" ;;
  esac
}
mkdir -p "$OUT"
ROWS="$OUT/rows.jsonl"
: > "$ROWS"
py_field() { python3 -c "import json,sys; d=json.loads(sys.stdin.read() or '{}'); print(d.get('$1',''))"; }
for v in $VARIANTS; do
  if [ -n "$ONLY" ] && ! echo " $ONLY " | grep -q " $v "; then continue; fi
  keys=$(keys_of "$v")
  js=$("$CLF" bench "$BASE" --device "$DEVICE" --steps "$STEPS" --warmup "$WARMUP" --json $keys 2>/dev/null | tail -1)
  tps=$(echo "$js" | py_field tokens_per_s)
  np=$(echo "$js" | py_field num_params)
  fl=$(echo "$js" | py_field flops_per_token)
  echo "{\"variant\":\"$v\",\"tool\":\"clformer\",\"device\":\"$DEVICE\",\"keys\":\"$keys\",\"tokens_per_s\":${tps:-null},\"num_params\":${np:-null},\"flops_per_token\":${fl:-null}}" >> "$ROWS"
  if [ -n "$TORCH_DEVICE" ] && { [ "$v" = llama ] || [ "$v" = gpt2 ]; }; then
    sets=""
    for k in $keys; do sets="$sets --set $k"; done
    tj=$(python3 "$HERE/pytorch_gpt.py" --config "$BASE" --device "$TORCH_DEVICE" --steps "$STEPS" --warmup "$WARMUP" --json $sets 2>/dev/null | tail -1)
    ttps=$(echo "$tj" | py_field tokens_per_s)
    echo "{\"variant\":\"$v\",\"tool\":\"pytorch\",\"device\":\"$TORCH_DEVICE\",\"keys\":\"$keys\",\"tokens_per_s\":${ttps:-null}}" >> "$ROWS"
  fi
  if [ "$TRAIN_STEPS" -gt 0 ]; then
    rd="$OUT/run_$v"
    rm -rf "$rd"
    "$CLF" train "$BASE" --device "$DEVICE" --out "$rd" --quiet steps="$TRAIN_STEPS" \
      warmup_steps=$((TRAIN_STEPS / 20)) eval_interval=0 checkpoint_interval=0 $keys >/dev/null 2>&1
    vl=$("$CLF" eval "$rd" --data "$ROOT/data/wiki" --device "$DEVICE" 2>/dev/null | awk '/loss/ {print $2}' | tail -1)
    echo "{\"variant\":\"$v\",\"tool\":\"clformer-train\",\"device\":\"$DEVICE\",\"keys\":\"$keys\",\"train_steps\":$TRAIN_STEPS,\"val_loss\":${vl:-null}}" >> "$ROWS"
  fi
done
python3 - "$ROWS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["variant"], {})[r["tool"]] = r
base = by.get("llama", {}).get("clformer", {}).get("tokens_per_s")
print("| variant | keys changed | params | FLOPs/token | clformer tokens/s | vs llama | PyTorch tokens/s | clformer/PyTorch | val loss |")
print("|---|---|---|---|---|---|---|---|---|")
for v, d in by.items():
    c = d.get("clformer", {}); t = d.get("pytorch", {}); tr = d.get("clformer-train", {})
    tps = c.get("tokens_per_s"); ttps = t.get("tokens_per_s")
    rel = f"{tps / base:.2f}x" if tps and base else ""
    ratio = f"{tps / ttps:.2f}x" if tps and ttps else ""
    vl = tr.get("val_loss")
    print(f"| {v} | {c.get('keys') or '(base)'} | {c.get('num_params') or ''} | {c.get('flops_per_token') or ''} | "
          f"{tps:.0f} | {rel} | {f'{ttps:.0f}' if ttps else ''} | {ratio} | {vl if vl is not None else ''} |"
          if tps else f"| {v} | {c.get('keys')} | | | failed | | | | |")
EOF
