#!/bin/bash
# clformer test: `clformer export --format hf` refuses the options no Hugging Face class expresses
# (mlp relu2, logit_softcap, qk_norm, share_layers) and mixes of the family options that are
# neither GPT2LMHeadModel nor LlamaForCausalLM (layernorm + rope, GPT-2 with grouped-query
# attention, Llama-style with biases): one error line naming the option and saying the safetensors
# checkpoint stays the native format, a non-zero exit, nothing written. The two exportable
# families (GPT-2 with an untied head, Llama-style with GQA) export. Needs no Python.
set -u
CLF=$1
SRC=$2
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$SRC" || exit 1
fail=0
n=0
train() { # NAME CONFIG OVERRIDES...
  local name=$1 cfg=$2
  shift 2
  $CLF train "$cfg" d_model=16 num_heads=4 num_layers=2 d_ff=32 max_length=8 batch_size=2 \
    eval_interval=0 "$@" --device cpu --steps 1 --out "$W/$name" --quiet 2>"$W/train_err"
}
refused() { # NAME WORD CONFIG OVERRIDES...
  local name=$1 word=$2 cfg=$3
  shift 3
  n=$((n + 1))
  if ! train "$name" "$cfg" "$@"; then
    echo "FAIL - $name: could not train ($(head -c 300 "$W/train_err"))"; fail=1; return
  fi
  $CLF export "$W/$name" --format hf "$W/out_$name" --quiet 2>"$W/err"
  local rc=$? lines
  lines=$(grep -c . "$W/err")
  if [ $rc -eq 0 ]; then
    echo "FAIL - $name: export succeeded"; fail=1
  elif [ $rc -ge 128 ]; then
    echo "FAIL - $name: export crashed (exit $rc)"; fail=1
  elif [ "$lines" != 1 ] || ! grep -q -- "$word" "$W/err" || ! grep -q "native format" "$W/err"; then
    echo "FAIL - $name: expected one line naming '$word' and the native format, got: $(head -c 400 "$W/err")"; fail=1
  elif [ -e "$W/out_$name" ]; then
    echo "FAIL - $name: refused but wrote $W/out_$name"; fail=1
  else
    echo "ok   - $name refused: $(cat "$W/err")"
  fi
}
exported() { # NAME CLASS CONFIG OVERRIDES...
  local name=$1 cls=$2 cfg=$3
  shift 3
  if ! train "$name" "$cfg" "$@"; then
    echo "FAIL - $name: could not train ($(head -c 300 "$W/train_err"))"; fail=1; return
  fi
  if $CLF export "$W/$name" --format hf "$W/out_$name" --quiet 2>"$W/err" &&
     grep -q "\"$cls\"" "$W/out_$name/config.json" && [ -s "$W/out_$name/model.safetensors" ]; then
    echo "ok   - $name exports as $cls"
  else
    echo "FAIL - $name: export as $cls failed: $(head -c 400 "$W/err")"; fail=1
  fi
}
# options no class has, on either family
refused relu2 "mlp relu2" configs/tiny.json mlp=relu2
refused softcap "logit_softcap" configs/tiny.json logit_softcap=30
refused qk_norm "qk_norm" configs/tiny.json qk_norm=true
refused share_layers "share_layers" configs/tiny.json share_layers=1
refused llama_qk_norm "qk_norm" configs/llama_tiny.json num_kv_heads=2 qk_norm=true
refused llama_softcap "logit_softcap" configs/llama_tiny.json num_kv_heads=2 logit_softcap=15
refused llama_share "share_layers" configs/llama_tiny.json num_kv_heads=2 share_layers=1
# mixes of the family options that are neither class
refused layernorm_rope "position" configs/tiny.json position=rope
refused gpt2_gqa "num_kv_heads" configs/tiny.json num_kv_heads=2
refused llama_bias "bias" configs/llama_tiny.json num_kv_heads=2 bias=true
refused llama_gelu "mlp" configs/llama_tiny.json num_kv_heads=2 mlp=gelu
# the two families export
exported gpt2_untied GPT2LMHeadModel configs/tiny.json tie_embeddings=false
exported llama_gqa LlamaForCausalLM configs/llama_tiny.json num_kv_heads=2 tie_embeddings=false
exit $fail
