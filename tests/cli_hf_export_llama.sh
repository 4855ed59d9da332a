#!/bin/bash
# clformer test: `clformer export --format hf` of Llama-style models (rmsnorm, rope, swiglu, no
# bias) loads in Hugging Face transformers as LlamaForCausalLM and gives clformer's logits (1e-4
# relative). Two models trained a few steps: grouped-query attention (4 query heads over 2 KV
# heads) with an untied head and non-default norm_eps and rope_theta, and multi-query attention
# with a tied head. Needs python3 with torch and transformers; skipped (exit 77) when they are
# absent, since the test suite must not require them.
set -u
CLF=$1
SRC=$2
python3 -c 'import torch, transformers, safetensors' 2>/dev/null || { echo "skipped: python3 torch/transformers/safetensors not installed"; exit 77; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$SRC" || exit 1
fail=0
TOKENS="72 101 108 108 111 44 32 119 111 114 108 100 33 10 84 104 101 32 113 117 105 99 107"
check() { # NAME OVERRIDES...
  local name=$1
  shift
  if ! $CLF train configs/llama_tiny.json d_model=48 num_heads=4 num_layers=2 d_ff=80 max_length=32 \
      batch_size=4 eval_interval=0 "$@" --device cpu --steps 5 --out "$W/$name" --quiet; then
    echo "FAIL - $name: train"; fail=1; return
  fi
  if ! $CLF export "$W/$name" --format hf "$W/$name.hf" --quiet; then
    echo "FAIL - $name: export"; fail=1; return
  fi
  if ! grep -q '"LlamaForCausalLM"' "$W/$name.hf/config.json"; then
    echo "FAIL - $name: config.json does not name LlamaForCausalLM"; fail=1; return
  fi
  $CLF logits "$W/$name" --tokens "$TOKENS" --out "$W/$name.logits" || { echo "FAIL - $name: logits"; fail=1; return; }
  if python3 tools/check_hf_export.py "$W/$name.hf" --tokens "$TOKENS" --logits "$W/$name.logits" --rtol 1e-4; then
    echo "ok   - $name"
  else
    echo "FAIL - $name: transformers' logits differ"; fail=1
  fi
}
check gqa_untied num_kv_heads=2 tie_embeddings=false norm_eps=1e-6 rope_theta=500000
check mqa_tied num_kv_heads=1 tie_embeddings=true
exit $fail
