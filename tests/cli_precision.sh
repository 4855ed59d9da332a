#!/bin/bash
# clformer test: the `precision` setting at the CLI. tf32 where the backend has no TF32 matrix
# engine (the CPU backend, PoCL) trains in fp32 and says so once; the losses equal an fp32 run's
# bit for bit there; --precision is the same as precision=; a mode that does not exist is one
# error line (and so is an unknown half_activations); a checkpoint resumes under another precision (the weights are fp32) with a note; on
# the CPU backend and the OpenCL device an fp32 run resumes under tf32 (said once, the same losses
# as an fp32 resume where there is no TF32 engine), writes F32 checkpoints, and resumes in fp32.
set -u
CLF=$1
SRC=$2
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
. "$(dirname "$0")/cli_common.sh" # fail=0; ok, bad, expect_bad
cd "$SRC" || exit 1
SMALL="d_model=32 num_heads=2 num_layers=2 d_ff=64 max_length=32 batch_size=4 eval_interval=0 log_interval=1 warmup_steps=1"
losses() { grep -o '"loss":[^,]*' "$1" | tr '\n' ' '; }

"$CLF" train configs/tiny.json $SMALL --steps 3 --device cpu --out "$W/a" --log "$W/a.jsonl" --quiet >/dev/null 2>&1 \
  || bad "fp32 run failed"
msg=$("$CLF" train configs/tiny.json $SMALL --steps 3 --device cpu --out "$W/b" --log "$W/b.jsonl" --precision tf32 2>&1 >/dev/null)
n=$(printf '%s\n' "$msg" | grep -c "precision tf32: the CPU backend has no TF32 matrix engine")
[ "$n" -eq 1 ] && ok "cpu: tf32 said once" || bad "cpu: tf32 note printed $n times: $msg"
[ "$(losses "$W/a.jsonl")" = "$(losses "$W/b.jsonl")" ] && [ -n "$(losses "$W/a.jsonl")" ] \
  && ok "cpu: tf32 losses equal fp32's" || bad "cpu: losses differ: $(losses "$W/a.jsonl") vs $(losses "$W/b.jsonl")"

msg=$("$CLF" train configs/tiny.json $SMALL --steps 2 --out "$W/c" --precision double 2>&1 >/dev/null); rc=$?
if [ $rc -ne 0 ] && [ "$(printf '%s\n' "$msg" | grep -c '^error:')" -eq 1 ] && printf '%s\n' "$msg" | grep -q "precision 'double'; use one of: fp32, tf32, bf16, fp16" && [ ! -e "$W/c" ]; then
  ok "unknown precision refused: $msg"
else bad "unknown precision: rc $rc: $msg"; fi

msg=$("$CLF" train configs/tiny.json $SMALL --steps 2 --out "$W/e" --precision bf16 half_activations=half 2>&1 >/dev/null); rc=$?
if [ $rc -ne 0 ] && [ "$(printf '%s\n' "$msg" | grep -c '^error:')" -eq 1 ] && printf '%s\n' "$msg" | grep -q "unknown half_activations 'half'; did you mean 'all'?" && [ ! -e "$W/e" ]; then
  ok "unknown half_activations refused: $msg"
else bad "unknown half_activations: rc $rc: $msg"; fi

msg=$("$CLF" train configs/tiny.json $SMALL --steps 5 --device cpu --resume "$W/a" --out "$W/a" precision=tf32 2>&1 >/dev/null); rc=$?
[ $rc -eq 0 ] && printf '%s\n' "$msg" | grep -q 'resume: precision changed from "fp32" to "tf32"' \
  && ok "resume under tf32 accepted with a note" || bad "resume under tf32: rc $rc: $msg"

# Checkpoints keep the fp32 master weights, so a run trained in fp32 resumes under tf32 and back:
# on each backend, 3 fp32 steps, then steps 4-5 under --precision tf32 (where the device has no
# TF32 engine: said exactly once, and the losses equal an fp32 resume's bit for bit; with tensor
# cores: within TF32's rounding), the tf32 run's checkpoint holds F32 tensors only, and it resumes
# in fp32 for step 6.
resume_case() { # DEVICE NO-ENGINE-NOTE
  local dev=$1 note=$2 d="$W/rs_${1%%:*}" msg rc n
  "$CLF" train configs/tiny.json $SMALL --steps 3 --device "$dev" --out "$d/a" --quiet >/dev/null 2>&1 \
    || { bad "$dev: fp32 run failed"; return; }
  "$CLF" train configs/tiny.json $SMALL --steps 5 --device "$dev" --resume "$d/a" --out "$d/f" --log "$d/f.jsonl" --quiet >/dev/null 2>&1 \
    || { bad "$dev: fp32 resume failed"; return; }
  msg=$("$CLF" train configs/tiny.json $SMALL --steps 5 --device "$dev" --resume "$d/a" --out "$d/t" --log "$d/t.jsonl" --precision tf32 2>&1 >/dev/null); rc=$?
  [ $rc -eq 0 ] || { bad "$dev: resume under tf32 failed (rc $rc): $msg"; return; }
  n=$(printf '%s\n' "$msg" | grep -c "$note")
  if printf '%s\n' "$msg" | grep -q "precision tf32: GEMMs on .* tensor cores"; then
    ok "$dev: resumed under tf32 on tensor cores"
    python3 - "$d/f.jsonl" "$d/t.jsonl" <<'PY' && ok "$dev: tf32 resume continues at steps 4-5, losses within 1e-2 of fp32's" || bad "$dev: tf32 resume steps or losses"
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert [r["step"] for r in a] == [r["step"] for r in b] == [4, 5], (a, b)
assert all(abs(x["loss"] - y["loss"]) <= 1e-2 * abs(x["loss"]) for x, y in zip(a, b)), (a, b)
PY
  else
    [ "$n" -eq 1 ] && ok "$dev: resumed under tf32, the fp32 note said once" || bad "$dev: note '$note' printed $n times: $msg"
    [ "$(losses "$d/t.jsonl")" = "$(losses "$d/f.jsonl")" ] && [ "$(grep -o '"step": [0-9]*' "$d/t.jsonl" | tr '\n' ' ')" = '"step": 4 "step": 5 ' ] \
      && ok "$dev: steps 4-5 under tf32 equal an fp32 resume's losses: $(losses "$d/t.jsonl")" \
      || bad "$dev: tf32 resume $(cat "$d/t.jsonl") vs fp32 resume $(cat "$d/f.jsonl")"
  fi
  [ "$(printf '%s\n' "$msg" | grep -c 'resume: precision changed from "fp32" to "tf32"')" -eq 1 ] \
    && ok "$dev: the precision change noted once" || bad "$dev: no single precision-change note: $msg"
  python3 - "$d/t/step_000005.safetensors" <<'PY' && ok "$dev: the tf32 run's checkpoint holds F32 master weights" || bad "$dev: tf32 checkpoint dtypes"
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
h = json.loads(b[8:8 + struct.unpack('<Q', b[:8])[0]]); h.pop('__metadata__', None)
assert h and all(v["dtype"] == "F32" for v in h.values()), {k: v["dtype"] for k, v in h.items()}
PY
  msg=$("$CLF" train configs/tiny.json $SMALL --steps 6 --device "$dev" --resume "$d/t" --out "$d/t" --log "$d/b.jsonl" 2>&1 >/dev/null); rc=$?
  [ $rc -eq 0 ] && printf '%s\n' "$msg" | grep -q 'resume: precision changed from "tf32" to "fp32"' && grep -q '"step": 6' "$d/b.jsonl" \
    && ok "$dev: back to fp32 for step 6" || bad "$dev: resume back to fp32: rc $rc: $msg"
}
resume_case cpu "precision tf32: the CPU backend has no TF32 matrix engine"

if "$CLF" devices 2>/dev/null | grep -q "opencl:"; then
  resume_case opencl "has no TF32 matrix engine this backend can use"
  msg=$("$CLF" train configs/tiny.json $SMALL --steps 2 --device opencl --out "$W/d" --precision tf32 2>&1 >/dev/null); rc=$?
  if [ $rc -ne 0 ]; then bad "opencl tf32 run failed: $msg"
  elif printf '%s\n' "$msg" | grep -q "precision tf32: GEMMs on .* tensor cores"; then ok "opencl: tensor cores in use"
  elif [ "$(printf '%s\n' "$msg" | grep -c 'has no TF32 matrix engine this backend can use')" -eq 1 ]; then ok "opencl: fp32, said once"
  else bad "opencl: no precision note: $msg"; fi
else
  echo "(no OpenCL device: the OpenCL case is not run)"
fi
[ $fail -eq 0 ] && echo "PASS cli_precision" || echo "FAIL cli_precision"
exit $fail
