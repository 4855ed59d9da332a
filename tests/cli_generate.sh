#!/bin/bash
# clformer test: generation with the KV cache through the CLI on the CPU backend: a batch of
# prompts of different lengths gives each prompt the output it gets alone (greedy and seeded
# sampling), --json lines, --stop, past max_length (learned positions stop with "length" and a
# note; RoPE slides), quantize + generate/eval of the int8 model (greedy text equal to fp32's on
# trained GPT-2 and Llama-style models, weights under 35% of fp32's), chat keeps the conversation,
# bench --generate prints its rows, and bad input gets one clear line.
set -u
CLF=$1
SRC=$2
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
. "$(dirname "$0")/cli_common.sh" # fail=0; ok, bad, expect_bad
cd "$SRC" || exit 1
SMALL="d_model=32 num_heads=2 num_layers=2 d_ff=80 max_length=32 batch_size=4 eval_interval=0 log_interval=1 warmup_steps=2"
LLAMA="d_model=32 num_heads=4 num_kv_heads=2 num_layers=2 d_ff=48 max_length=32 batch_size=4 eval_interval=0 log_interval=1 warmup_steps=2 qk_norm=true logit_softcap=20"
$CLF train configs/tiny.json $SMALL --device cpu --steps 3 --out "$W/gpt" --quiet || bad "train gpt"
$CLF train configs/llama_tiny.json $LLAMA --device cpu --steps 3 --out "$W/llama" --quiet || bad "train llama"

printf 'The quick brown fox\nA\n{"prompt": "Hello there", "tokens": 7}\nxyz\n' > "$W/p.txt"
for m in gpt llama; do
  for samp in "--temperature 0" "--temperature 0.9 --top-k 0 --top-p 0.9 --repetition-penalty 1.3"; do
    a=$($CLF generate "$W/$m" --device cpu --prompts "$W/p.txt" --batch 4 --tokens 12 --json $samp 2>/dev/null)
    b=$($CLF generate "$W/$m" --device cpu --prompts "$W/p.txt" --batch 1 --tokens 12 --json $samp 2>/dev/null)
    c=$($CLF generate "$W/$m" --device cpu --prompts "$W/p.txt" --batch 3 --tokens 12 --json $samp 2>/dev/null)
    [ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" = "$c" ] && ok "$m ($samp): batch 4 = batch 3 = batch 1" || bad "$m ($samp): batches differ: $a // $b // $c"
    # prompt 1 ("A") alone, with prompt 1's seed stream (42 + 1)
    one=$($CLF generate "$W/$m" --device cpu --prompt "A" --tokens 12 --seed 43 --json $samp 2>/dev/null | sed 's/"prompt_index":0/"prompt_index":1/')
    echo "$a" | LC_ALL=C grep -qxF -- "$one" && ok "$m ($samp): prompt 1 in the batch = alone" || bad "$m ($samp): prompt 1 alone: $one vs $a"
  done
  n=$(echo "$a" | grep -c '"finish_reason"')
  [ "$n" -eq 4 ] && ok "$m: one JSON line per prompt" || bad "$m: $n JSON lines"
  echo "$a" | LC_ALL=C grep -q '"prompt_index":2,.*"tokens":7' && ok "$m: per-prompt tokens from the JSON line" || bad "$m: per-prompt tokens: $a"
done

# streaming single prompt = the JSON text
s=$($CLF generate "$W/llama" --device cpu --prompt "ab" --tokens 15 --temperature 0 2>/dev/null)
j=$($CLF generate "$W/llama" --device cpu --prompt "ab" --tokens 15 --temperature 0 --json 2>/dev/null)
t=$(echo "$j" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["text"], end="")' 2>/dev/null)
[ "$s" = "ab$t" ] && ok "streamed text = --json text" || bad "stream '$s' vs json '$t'"
# --stop: the text ends before the stop string
first=$(printf '%s' "$t" | cut -c3-4)
if [ -n "$first" ]; then
  js=$($CLF generate "$W/llama" --device cpu --prompt "ab" --tokens 15 --temperature 0 --json --stop "$first" 2>/dev/null)
  echo "$js" | grep -q '"finish_reason":"stop"' && ! echo "$js" | python3 -c 'import json,sys; sys.exit(0 if sys.argv[1] in json.loads(sys.stdin.read())["text"] else 1)' "$first" && ok "--stop '$first' ends the text before it" || bad "--stop: $js"
fi

# past max_length (32): learned positions stop with "length" and a note; RoPE slides on
err=$($CLF generate "$W/gpt" --device cpu --prompt "abc" --tokens 100 --temperature 0 --json 2>&1 >"$W/g.json")
grep -q '"finish_reason":"length"' "$W/g.json" && grep -q '"tokens":30,' "$W/g.json" && echo "$err" | grep -q "max_length" && ok "learned positions stop at max_length with a note" || bad "learned past max_length: $(cat "$W/g.json") / $err"
$CLF generate "$W/llama" --device cpu --prompt "abc" --tokens 100 --temperature 0 --json 2>/dev/null > "$W/l.json"
grep -q '"tokens":100,"finish_reason":"length"' "$W/l.json" && ok "RoPE generates past max_length (sliding cache)" || bad "RoPE past max_length: $(cat "$W/l.json")"
# a prompt longer than the context keeps its last max_length tokens, with a warning
long=$(printf 'x%.0s' $(seq 1 50))
err=$($CLF generate "$W/llama" --device cpu --prompt "$long" --tokens 3 --json 2>&1 >/dev/null)
echo "$err" | grep -q "keeping its last 32 tokens" && ok "long prompt truncated from the left with a warning" || bad "long prompt: $err"

# int8: quantize, generate, eval; train/resume refuse it
$CLF quantize "$W/llama" --out "$W/q8.safetensors" > "$W/q.txt" && grep -q "saved" "$W/q.txt" && ok "quantize: $(cat "$W/q.txt")" || bad "quantize"
q=$($CLF generate "$W/q8.safetensors" --device cpu --prompt "ab" --tokens 10 --json 2>&1) && echo "$q" | grep -q '"tokens":10' && ok "generate reads the int8 model" || bad "int8 generate: $q"
e32=$($CLF eval "$W/llama" --data data/tiny_corpus.txt --device cpu 2>&1); e8=$($CLF eval "$W/q8.safetensors" --data data/tiny_corpus.txt --device cpu 2>&1)
python3 - "$e32" "$e8" <<'EOF' && ok "eval int8 within 1% of fp32 ($e32 / $e8)" || bad "eval int8: $e32 / $e8"
import sys
a = float(sys.argv[1].split()[1]); b = float(sys.argv[2].split()[1])
sys.exit(0 if abs(a - b) <= 0.01 * a else 1)
EOF

# int8 on trained models (400 and 200 steps): GPT-2 (learned positions, tied head: wte and wpe int8) and
# Llama-style (RoPE, untied head): greedy text from the int8 file equals fp32's for 24 tokens, and
# bench --generate reports int8 weights under 35% of fp32's (the embeddings are int8 too)
T8="max_length=32 batch_size=8 eval_interval=0 log_interval=100 warmup_steps=10 learning_rate=0.01 --device cpu --quiet"
$CLF train configs/tiny.json d_model=32 num_heads=2 num_layers=2 d_ff=80 $T8 --steps 400 --out "$W/g8" || bad "train g8"
$CLF train configs/llama_tiny.json d_model=32 num_heads=4 num_kv_heads=2 num_layers=2 d_ff=48 qk_norm=true tie_embeddings=false $T8 --steps 200 --out "$W/l8" || bad "train l8"
for m in g8 l8; do
  $CLF quantize "$W/$m" --out "$W/$m.q8.safetensors" > /dev/null || bad "quantize $m"
  f=$($CLF generate "$W/$m" --device cpu --prompt "The quick" --tokens 24 --temperature 0 2>/dev/null)
  q=$($CLF generate "$W/$m.q8.safetensors" --device cpu --prompt "The quick" --tokens 24 --temperature 0 2>/dev/null)
  [ -n "$f" ] && [ "$f" = "$q" ] && ok "$m: int8 greedy = fp32 greedy for 24 tokens ('$q')" || bad "$m: int8 greedy '$q' vs fp32 '$f'"
  b=$($CLF bench --generate "$W/$m" --device cpu --batch 1 --prompt-len 8 --new 4 --json 2>/dev/null)
  python3 - "$b" <<'EOF' && ok "$m: bench --generate int8 weights under 35% of fp32's" || bad "$m: bench weights: $b"
import json, sys
rows = {r["precision"]: r["weights_mib"] for r in map(json.loads, sys.argv[1].splitlines()) if "precision" in r}
sys.exit(0 if rows["int8"] <= 0.35 * rows["fp32"] else 1)
EOF
done

# chat: two turns, the second continues in the cache (no error, a reply per turn)
c=$(printf 'hello\nand more\n' | $CLF chat "$W/llama" --device cpu --tokens 8 --temperature 0 2>/dev/null)
[ "$(echo "$c" | wc -l)" -eq 2 ] && ok "chat answers each turn" || bad "chat: $c"
c=$(printf 'hello\n%s\n%s\n' "$long" "$long" | $CLF chat "$W/gpt" --device cpu --tokens 8 --temperature 0 2>&1 >/dev/null)
echo "$c" | grep -q "filled the model's context" && ok "chat with learned positions ends when the context is full" || bad "chat full: $c"

# bench --generate
b=$($CLF bench --generate "$W/llama" --device cpu --batch 1,2 --prompt-len 8 --new 8 --json 2>&1)
[ "$(echo "$b" | grep -c '"decode_tok_s"')" -eq 4 ] && ok "bench --generate: fp32 and int8 at batch 1 and 2" || bad "bench --generate: $b"

# bad input: one line each, non-zero exit
expect_err() { # name pattern command...
  local name=$1 pat=$2; shift 2
  local msg rc
  msg=$("$@" 2>&1 >/dev/null); rc=$?
  if [ $rc -ne 0 ] && echo "$msg" | grep -q -- "$pat" && [ "$(echo "$msg" | grep -c .)" -eq 1 ]; then ok "$name: $msg"
  else bad "$name (rc=$rc): $msg"; fi
}
: > "$W/empty.txt"
expect_err "empty prompts file" "has no prompts" $CLF generate "$W/llama" --device cpu --prompts "$W/empty.txt"
expect_err "--top-p 0" "outside (0, 1]" $CLF generate "$W/llama" --device cpu --top-p 0
expect_err "--top-p 1.5" "top-p" $CLF generate "$W/llama" --device cpu --top-p 1.5
expect_err "negative temperature" "temperature" $CLF generate "$W/llama" --device cpu --temperature -1
expect_err "--batch 0" "batch" $CLF generate "$W/llama" --device cpu --batch 0
expect_err "prompt and prompts" "not both" $CLF generate "$W/llama" --prompt a --prompts "$W/p.txt"
printf '{"prompt": "a", "topk": 3}\n' > "$W/bad.txt"
expect_err "unknown JSON key" 'unknown key "topk"' $CLF generate "$W/llama" --device cpu --prompts "$W/bad.txt"
printf '{"prompt": "a", "top_p": 2}\n' > "$W/bad2.txt"
expect_err "bad per-prompt top_p" '"top_p"' $CLF generate "$W/llama" --device cpu --prompts "$W/bad2.txt"
expect_err "unknown option" "unknown option '--nope'" $CLF generate "$W/llama" --nope
expect_err "train --resume an int8 model" "int8-quantized" $CLF train configs/llama_tiny.json $LLAMA --device cpu --steps 4 --resume "$W/q8.safetensors" --out "$W/r" --quiet
expect_err "quantize without --out" "--out" $CLF quantize "$W/llama"
expect_err "quantize an int8 model" "already an int8" $CLF quantize "$W/q8.safetensors" --out "$W/q88.safetensors"
expect_err "bench --generate past max_length" "max_length" $CLF bench --generate "$W/gpt" --device cpu --batch 1 --prompt-len 30 --new 10
exit $fail
