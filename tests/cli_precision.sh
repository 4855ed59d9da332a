#!/bin/bash
# clformer test: the `precision` setting at the CLI. tf32 where the backend has no TF32 matrix
# engine (the CPU backend, PoCL) trains in fp32 and says so once; the losses equal an fp32 run's
# bit for bit there; --precision is the same as precision=; a mode that does not exist is one
# error line; a checkpoint resumes under another precision (the weights are fp32) with a note.
set -u
CLF=$1
SRC=$2
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
fail=0
ok() { echo "ok   - $*"; }
bad() { echo "FAIL - $*"; fail=1; }
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
if [ $rc -ne 0 ] && [ "$(printf '%s\n' "$msg" | grep -c '^error:')" -eq 1 ] && printf '%s\n' "$msg" | grep -q "precision 'double'; use one of: fp32, tf32, bf16" && [ ! -e "$W/c" ]; then
  ok "unknown precision refused: $msg"
else bad "unknown precision: rc $rc: $msg"; fi

msg=$("$CLF" train configs/tiny.json $SMALL --steps 5 --device cpu --resume "$W/a" --out "$W/a" precision=tf32 2>&1 >/dev/null); rc=$?
[ $rc -eq 0 ] && printf '%s\n' "$msg" | grep -q 'resume: precision changed from "fp32" to "tf32"' \
  && ok "resume under tf32 accepted with a note" || bad "resume under tf32: rc $rc: $msg"

if "$CLF" devices 2>/dev/null | grep -q "opencl:"; then
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
