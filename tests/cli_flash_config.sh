#!/bin/bash
# clformer test: the attention config keys at the CLI (docs/attention.md). Bad input, each one
# `error:` line naming the field and the fix, non-zero exit, --out not created: attention_window
# negative or larger than max_length, a window or doc_mask with attention "matrix", doc_mask with
# a tokenizer that has no end-of-text token (the byte tokenizer), an unknown attention value.
# Good input trains: a sliding window with flash attention, and doc_mask with a tokenizer that has
# <|endoftext|> on text whose documents it separates; bench reports which attention path it
# counted.
set -u
CLF=$1
SRC=$2
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
. "$(dirname "$0")/cli_common.sh" # fail=0; ok, bad, expect_bad
cd "$SRC" || exit 1
SMALL="d_model=32 num_heads=2 num_layers=2 d_ff=64 max_length=48 batch_size=2 eval_interval=0 log_interval=1 warmup_steps=1 val_fraction=0.1"

T="train configs/tiny.json"
expect_bad "negative window" "attention_window (-1) must be between 0 and max_length (128)" "$W/o1" $T attention_window=-1 --out "$W/o1"
expect_bad "window past max_length" "attention_window (129) must be between 0 and max_length (128)" "$W/o2" $T attention_window=129 --out "$W/o2"
expect_bad "window with matrix attention" "attention \"matrix\" has no sliding window (attention_window); use attention \"flash\"" "$W/o3" $T attention=matrix attention_window=8 --out "$W/o3"
expect_bad "doc_mask with matrix attention" "attention \"matrix\" has no document mask (doc_mask)" "$W/o4" $T attention=matrix doc_mask=true --out "$W/o4"
expect_bad "doc_mask without end-of-text" "doc_mask: true needs a tokenizer with an <|endoftext|> token, and tokenizer 'byte' has none" "$W/o5" $T doc_mask=true --out "$W/o5"
expect_bad "unknown attention" "unknown attention 'flsh'; did you mean 'flash'?" "$W/o6" $T attention=flsh --out "$W/o6"
printf '{"attention_window": -4}\n' > "$W/neg.json"
expect_bad "negative window in a file" "attention_window (-4) must be between 0" "$W/o7" train "$W/neg.json" --out "$W/o7"

# good input: a window with flash attention trains
if $CLF $T $SMALL attention_window=8 --device cpu --steps 2 --out "$W/win" --quiet 2>"$W/win.err"; then
  ok "train with attention_window=8"
else bad "train with attention_window=8: $(tail -3 "$W/win.err")"; fi

# a model trained with a window is not what a Hugging Face class computes: export refuses it
msg=$($CLF export "$W/win" --format hf "$W/hf" --quiet 2>&1 >/dev/null); rc=$?
if [ $rc -ne 0 ] && [ "$(printf '%s\n' "$msg" | grep -c '^error:')" -eq 1 ] && printf '%s\n' "$msg" | grep -q "attention_window 8" && [ ! -e "$W/hf" ]; then
  ok "export --format hf refuses attention_window: $msg"
else bad "export --format hf with attention_window: rc=$rc: $msg"; fi

# doc_mask with a tokenizer that has <|endoftext|>, on documents separated by it
python3 - "$W/docs.txt" <<'PY'
import sys
docs = ["the cat sat on the mat and looked at the door for a while. " * 2,
        "a short note about rivers, hills and the weather in spring. ",
        "numbers: one two three four five six seven eight nine ten. " * 3]
open(sys.argv[1], "w").write("<|endoftext|>".join(docs * 12))
PY
if $CLF $T $SMALL doc_mask=true tokenizer=tokenizers/wiki16k.json vocab_size=16000 data="$W/docs.txt" \
     --device cpu --steps 2 --out "$W/doc" --quiet 2>"$W/doc.err"; then
  ok "train with doc_mask=true on <|endoftext|>-separated documents"
else bad "train with doc_mask=true: $(tail -3 "$W/doc.err")"; fi

# bench counts the path that runs
for a in flash matrix; do
  $CLF bench configs/tiny.json $SMALL attention=$a --device cpu --steps 1 --warmup 1 --json >"$W/b.json" 2>"$W/b.err" || bad "bench attention=$a: $(tail -3 "$W/b.err")"
  python3 - "$W/b.json" "$a" <<'PY' && ok "bench reports attention $a and counts its memory" || bad "bench attention=$a: $(cat "$W/b.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["attention"] == sys.argv[2], d["attention"]
# measured device memory matches the analytic count of the path that runs (alignment padding)
assert abs(d["peak_device_bytes"] - d["analytic_bytes"]) <= 0.01 * d["analytic_bytes"], d
open(sys.argv[1] + "." + sys.argv[2], "w").write(str(d["analytic_bytes"]))
PY
done
[ "$(cat "$W/b.json.flash")" -lt "$(cat "$W/b.json.matrix")" ] && ok "flash counts less memory than matrix ($(cat "$W/b.json.flash") < $(cat "$W/b.json.matrix") bytes)" || bad "flash memory not below matrix"

# resume: the attention path, the window and the document mask are what tokens see, not what the
# model holds; they may change on resume, each named in one "resume:" line
$CLF train configs/tiny.json $SMALL --device cpu --steps 2 --out "$W/rs" --quiet 2>"$W/rs.err" || bad "resume base run: $(tail -3 "$W/rs.err")"
if $CLF train configs/tiny.json $SMALL --device cpu --steps 4 attention=flash attention_window=8 --resume "$W/rs" --out "$W/rs" 2>"$W/rs.err" &&
  grep -q '^resume: attention changed from "auto" to "flash"' "$W/rs.err" &&
  grep -q '^resume: attention_window changed from 0 to 8' "$W/rs.err" && [ -f "$W/rs/step_000004.safetensors" ]; then
  ok "resume with another attention path and window"
else bad "resume with another attention path and window: $(tail -3 "$W/rs.err")"; fi

exit $fail
