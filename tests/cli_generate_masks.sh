#!/bin/bash
# clformer test: generation honours the attention masks a model was trained with, through the CLI
# on the CPU backend (RoPE models, whose scores depend only on the distance between tokens):
# - doc_mask (tokenizer with <|endoftext|>): the continuation of "A<|endoftext|>B" equals that of
#   "<|endoftext|>B" (B's tokens see nothing before their document), fp32 and int8, while that of
#   "A B" differs;
# - attention_window 3 over 2 layers: the next-token logits depend on the last 1 + 2*(3-1) = 5
#   tokens only, so the continuation of "A B" equals that of "B" when B has at least 5 tokens
#   (and stays equal past max_length, where the cache slides), while a model without the window
#   continues them differently.
# The continuations are sampled with one seed (see gen below), so they are equal only when the
# logits are.
set -u
CLF=$1
SRC=$2
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
. "$(dirname "$0")/cli_common.sh" # fail=0; ok, bad, expect_bad
cd "$SRC" || exit 1
SMALL="d_model=32 num_heads=4 num_kv_heads=2 num_layers=2 d_ff=48 max_length=24 batch_size=2 eval_interval=0 log_interval=1 warmup_steps=1 val_fraction=0.1"

python3 - "$W/docs.txt" <<'PY'
import sys
docs = ["the cat sat on the mat and looked at the door for a while. " * 2,
        "a short note about rivers, hills and the weather in spring. ",
        "numbers: one two three four five six seven eight nine ten. " * 3]
open(sys.argv[1], "w").write("<|endoftext|>".join(docs * 12))
PY
$CLF train configs/llama_tiny.json $SMALL doc_mask=true tokenizer=tokenizers/wiki16k.json \
  vocab_size=16000 data="$W/docs.txt" --device cpu --steps 3 --out "$W/doc" --quiet \
  2>"$W/doc.err" || bad "train doc_mask: $(tail -3 "$W/doc.err")"
for w in 0 3; do
  $CLF train configs/llama_tiny.json $SMALL attention_window=$w --device cpu --steps 3 \
    --out "$W/win$w" --quiet 2>"$W/win.err" || bad "train attention_window=$w: $(tail -3 "$W/win.err")"
done
$CLF quantize "$W/doc" --out "$W/doc8.safetensors" >/dev/null 2>&1 || bad "quantize doc"

# sampled at temperature 1 from every token with a fixed seed: the same draws come out exactly
# when the distributions are the same (up to rounding), and any real change in the logits of a
# near-uniform model of 16000 or 256 tokens reorders and moves the candidates, so the draws differ
gen() { # model prompt tokens: the generated text (JSON "text")
  $CLF generate "$1" --device cpu --prompt "$2" --tokens "$3" --temperature 1 --top-k 0 \
    --top-p 1 --seed 11 --json \
    2>>"$W/gen.err" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["text"])'
}

# documents: B's continuation does not see A
B="numbers: one two"
for m in "$W/doc" "$W/doc8.safetensors"; do
  a=$(gen "$m" "the cat sat on the mat<|endoftext|>$B" 12)
  b=$(gen "$m" "<|endoftext|>$B" 12)
  c=$(gen "$m" "the cat sat on the mat, $B" 12)
  if [ -n "$a" ] && [ "$a" = "$b" ]; then
    ok "doc_mask $(basename "$m"): the continuation after an end-of-text ignores the document before it"
  else bad "doc_mask $(basename "$m"): '$a' vs '$b' ($(tail -2 "$W/gen.err"))"; fi
  # the same prefix without the end-of-text reaches the continuation (the check above can fail)
  [ -n "$c" ] && [ "$c" != "$a" ] && ok "doc_mask $(basename "$m"): without the end-of-text the prefix counts" \
    || bad "doc_mask $(basename "$m"): the prefix changes nothing even without the end-of-text: '$c'"
done

# window: the continuation of B (>= 5 tokens) does not see A, also past max_length (24)
B="qzxv jkw pqb"
a=$(gen "$W/win3" "hello, $B" 30)
b=$(gen "$W/win3" "$B" 30)
if [ -n "$a" ] && [ "$a" = "$b" ]; then
  ok "attention_window 3: the continuation of the last tokens ignores what came before them (30 tokens, past max_length)"
else bad "attention_window 3: '$a' vs '$b' ($(tail -2 "$W/gen.err"))"; fi
a=$(gen "$W/win0" "hello, $B" 30)
b=$(gen "$W/win0" "$B" 30)
[ -n "$a" ] && [ "$a" != "$b" ] && ok "without a window the tokens before count (the check above can fail)" \
  || bad "without a window the prefix changes nothing: '$a'"

exit $fail
