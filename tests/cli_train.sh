#!/bin/bash
# clformer test: end-to-end CLI behaviour of training on the CPU backend: resume is bit-identical
# to an uninterrupted run, Ctrl-C saves a loadable checkpoint, generate/eval/export run, and bad
# input (device, checkpoint, shapes, data) gets a one-line error and a non-zero exit.
set -u
CLF=$1
SRC=$2
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
. "$(dirname "$0")/cli_common.sh" # fail=0; ok, bad, expect_bad
cd "$SRC" || exit 1
SMALL="d_model=32 num_heads=2 num_layers=2 d_ff=80 max_length=32 batch_size=4 eval_interval=0 log_interval=1 warmup_steps=2"

# 1. resume == uninterrupted, bit for bit
$CLF train configs/tiny.json $SMALL --device cpu --steps 6 --out "$W/a" --quiet || bad "train a"
$CLF train configs/tiny.json $SMALL --device cpu --steps 6 --stop-after 3 --out "$W/b" --quiet || bad "train b (first half)"
[ -f "$W/b/step_000003.safetensors" ] || bad "stop-after wrote no step_000003 checkpoint"
$CLF train configs/tiny.json $SMALL --device cpu --steps 6 --resume "$W/b" --out "$W/b" --quiet || bad "train b (resumed)"
if cmp -s "$W/a/step_000006.safetensors" "$W/b/step_000006.safetensors"; then
  ok "resume after 3 steps gives a checkpoint identical to 6 uninterrupted steps"
else
  bad "resumed run differs from the uninterrupted one"
fi
# grad accumulation also resumes exactly
$CLF train configs/tiny.json $SMALL grad_accum_steps=2 --device cpu --steps 4 --out "$W/c" --quiet || bad "train c"
$CLF train configs/tiny.json $SMALL grad_accum_steps=2 --device cpu --steps 4 --stop-after 1 --out "$W/d" --quiet || bad "train d1"
$CLF train configs/tiny.json $SMALL grad_accum_steps=2 --device cpu --steps 4 --resume "$W/d" --out "$W/d" --quiet || bad "train d2"
cmp -s "$W/c/step_000004.safetensors" "$W/d/step_000004.safetensors" && ok "resume with grad accumulation is exact" || bad "resume with grad accumulation differs"

# 2. JSON step log
$CLF train configs/tiny.json $SMALL --device cpu --steps 3 --out "$W/e" --log "$W/e.jsonl" --quiet || bad "train with --log"
python3 - "$W/e.jsonl" <<'PY' && ok "--log writes one JSON line per step with the required keys" || bad "--log output"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 3, rows
for i, r in enumerate(rows):
    for k in ("step", "loss", "lr", "grad_norm", "tokens_per_s"):
        assert k in r, (k, r)
    assert r["step"] == i + 1
PY

# 3. Ctrl-C saves a checkpoint and exits 130
$CLF train configs/tiny.json $SMALL --device cpu --steps 100000 --out "$W/f" --log "$W/f.jsonl" --quiet &
pid=$!
for _ in $(seq 1 200); do [ -s "$W/f.jsonl" ] && break; sleep 0.1; done
kill -INT $pid
wait $pid
rc=$?
[ $rc -eq 130 ] && ok "Ctrl-C exits with 130" || bad "Ctrl-C exit code $rc (want 130)"
ls "$W"/f/step_*.safetensors >/dev/null 2>&1 && ok "Ctrl-C left a checkpoint" || bad "no checkpoint after Ctrl-C"
ls "$W"/f/*.tmp* >/dev/null 2>&1 && bad "temporary file left behind" || ok "no temporary files left"

# 4. generate / eval / export from a checkpoint
out=$($CLF generate "$W/a" --prompt "The " --tokens 20 --seed 1 2>&1) && [ ${#out} -ge 20 ] && ok "generate prints text" || bad "generate: $out"
o1=$($CLF generate "$W/a" --prompt "ab" --tokens 10 --seed 7 2>/dev/null); o2=$($CLF generate "$W/a" --prompt "ab" --tokens 10 --seed 7 2>/dev/null)
[ "$o1" = "$o2" ] && ok "generate is deterministic for a seed" || bad "generate not deterministic"
ev=$($CLF eval "$W/a" --data data/tiny_corpus.txt --device cpu 2>&1)
echo "$ev" | grep -Eq '^loss [0-9]+\.[0-9]+$' && ok "eval prints 'loss <value>' ($ev)" || bad "eval output: $ev"
$CLF export "$W/a" --format hf "$W/hf" --quiet && [ -s "$W/hf/config.json" ] && [ -s "$W/hf/model.safetensors" ] && ok "export writes config.json + model.safetensors" || bad "export"

# 5. bad input: one line, names the thing, non-zero exit, nothing written
expect_err() { # name pattern command...
  local name=$1 pat=$2; shift 2
  local msg rc
  msg=$("$@" 2>&1 >/dev/null); rc=$?
  if [ $rc -ne 0 ] && echo "$msg" | grep -q -- "$pat" && [ "$(echo "$msg" | grep -c .)" -le 3 ]; then ok "$name: $msg"
  else bad "$name (rc=$rc): $msg"; fi
}
expect_err "unknown device" "device 'nosuchdev'" $CLF train configs/tiny.json --device nosuchdev --steps 1 --out "$W/x"
[ -e "$W/x" ] && bad "unknown device created the output dir" || true
printf 'garbage' > "$W/trunc.safetensors"
expect_err "truncated checkpoint" "trunc.safetensors" $CLF generate "$W/trunc.safetensors"
head -c 2000 "$W/a/step_000006.safetensors" > "$W/cut.safetensors"
expect_err "cut checkpoint" "cut.safetensors" $CLF generate "$W/cut.safetensors"
expect_err "shape mismatch on resume" "shape" $CLF train configs/tiny.json $SMALL d_model=48 --device cpu --steps 8 --resume "$W/a" --out "$W/y"
expect_err "missing data" "nonexistent_corpus" $CLF train configs/tiny.json data=/nonexistent_corpus.txt --steps 1 --out "$W/z"
printf 'hi' > "$W/short.txt"
expect_err "too-short data" "short.txt" $CLF train configs/tiny.json data="$W/short.txt" --steps 1 --out "$W/z"
: > "$W/empty.txt"
expect_err "empty data" "empty.txt" $CLF train configs/tiny.json data="$W/empty.txt" --steps 1 --out "$W/z"
expect_err "unknown key override" "did you mean" $CLF train configs/tiny.json d_modle=64 --steps 1 --out "$W/z"
expect_err "inconsistent heads" "divisible" $CLF train configs/tiny.json d_model=50 num_heads=4 --steps 1 --out "$W/z"
printf '{"d_model": 64,\n "num_heads": }\n' > "$W/bad.json"
expect_err "malformed JSON" "line 2" $CLF train "$W/bad.json" --steps 1 --out "$W/z"
expect_err "grad_accum_steps out of range" "grad_accum_steps (100)" $CLF train configs/tiny.json grad_accum_steps=100 --steps 1 --out "$W/z"
expect_err "unknown option" "unknown option" $CLF train configs/tiny.json --stepz 3
expect_err "missing checkpoint" "no such file" $CLF generate "$W/none.safetensors"
exit $fail
