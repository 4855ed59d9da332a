#!/bin/bash
# clformer test: the memory settings at the CLI. A bad `recompute` or `head_chunk` prints exactly
# one `error:` line naming the field (the nearest value suggested), exits non-zero and leaves
# --out uncreated; a checkpoint trained with recompute=none resumes under recompute=block and
# head_chunk=5 (run-time settings: accepted with a note each) and the loss of the resumed steps
# matches the uninterrupted run's (recompute changes no bit, the chunked head only rounding).
set -u
CLF=$1
SRC=$2
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
. "$(dirname "$0")/cli_common.sh" # fail=0; ok, bad, expect_bad
cd "$SRC" || exit 1
SMALL="d_model=32 num_heads=2 num_layers=2 d_ff=80 max_length=32 batch_size=4 eval_interval=0 log_interval=1 warmup_steps=2"

T="train configs/tiny.json"
expect_bad "unknown recompute" "unknown recompute 'blok'; did you mean 'block'?" "$W/o1" $T recompute=blok --out "$W/o1"
expect_bad "unknown recompute, no close name" "use one of: none, attention, block" "$W/o2" $T recompute=everything --out "$W/o2"
expect_bad "negative head_chunk" "head_chunk" "$W/o3" $T head_chunk=-4 --out "$W/o3"
printf '{"recompute": 2}\n' > "$W/badrc.json"
expect_bad "recompute as a number in a file" "'recompute' must be a string" "$W/o4" train "$W/badrc.json" --out "$W/o4"
printf '{"recompute": "atention"}\n' > "$W/badrc2.json"
expect_bad "unknown recompute in a file" "did you mean 'attention'?" "$W/o5" train "$W/badrc2.json" --out "$W/o5"
expect_bad "unknown recompute for bench" "did you mean 'block'?" "$W/o6" bench configs/tiny.json recompute=blocks --device cpu

# resume under other memory settings: accepted, one note per key, same losses
loss_of() { grep -o 'step *[0-9]*/[0-9]* *| *loss [0-9.]*' "$1" | tail -1 | grep -o 'loss [0-9.]*'; }
$CLF $T $SMALL --device cpu --steps 4 --out "$W/a" > "$W/a.log" 2>&1 || bad "train 4 steps"
$CLF $T $SMALL --device cpu --steps 2 --out "$W/b" --quiet || bad "train 2 steps"
$CLF $T $SMALL recompute=block --device cpu --steps 4 --resume "$W/b" --out "$W/b" > "$W/b.log" 2>&1 || bad "resume under recompute=block"
grep -q "resume: recompute changed from \"none\" to \"block\"" "$W/b.log" && ok "resume notes the recompute change" || bad "no note for recompute: $(cat "$W/b.log")"
la=$(loss_of "$W/a.log"); lb=$(loss_of "$W/b.log")
[ -n "$la" ] && [ "$la" = "$lb" ] && ok "step 4 after resuming under recompute=block: $lb, uninterrupted $la" || bad "step 4 loss differs: resumed [$lb], uninterrupted [$la]"
$CLF $T $SMALL head_chunk=5 --device cpu --steps 5 --resume "$W/b" --out "$W/b" > "$W/c.log" 2>&1 || bad "resume under head_chunk=5"
grep -q "resume: head_chunk changed from 0 to 5" "$W/c.log" && ok "resume notes the head_chunk change" || bad "no note for head_chunk: $(cat "$W/c.log")"
exit $fail
