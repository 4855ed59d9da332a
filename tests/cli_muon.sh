#!/bin/bash
# clformer test: the optimizer, schedule and --target-loss from the command line on the CPU
# backend: resume with optimizer muon is bit-identical to an uninterrupted run (wsd schedule, with
# the Muon momentum in the checkpoint); resuming across optimizers is refused in one line; every
# bad value of the new keys gets one line naming the file or command line, the field and the fix,
# and a non-zero exit; Muon keys with adamw get a warning naming them; --target-loss stops at the
# first validation loss under the target, prints and logs the wall time and tokens, saves a
# checkpoint and exits 0, warns when the target is not reached, and is refused without
# validation data.
set -u
CLF=$1
SRC=$2
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
. "$(dirname "$0")/cli_common.sh" # fail=0; ok, bad, expect_bad
cd "$SRC" || exit 1
SMALL="d_model=32 num_heads=2 num_layers=2 d_ff=80 max_length=32 batch_size=4 eval_interval=0 log_interval=1 warmup_steps=2"
MUON="optimizer=muon lr_schedule=wsd decay_fraction=0.5"

# 1. resume == uninterrupted, bit for bit, with Muon (the decay phase starts at step 3)
$CLF train configs/tiny.json $SMALL $MUON --device cpu --steps 6 --out "$W/a" --quiet || bad "train a"
$CLF train configs/tiny.json $SMALL $MUON --device cpu --steps 6 --stop-after 3 --out "$W/b" --quiet || bad "train b (first half)"
$CLF train configs/tiny.json $SMALL $MUON --device cpu --steps 6 --resume "$W/b" --out "$W/b" --quiet || bad "train b (resumed)"
if cmp -s "$W/a/step_000006.safetensors" "$W/b/step_000006.safetensors"; then
  ok "optimizer muon: resume after 3 steps gives a checkpoint identical to 6 uninterrupted steps"
else
  bad "optimizer muon: resumed run differs from the uninterrupted one"
fi
grep -aq '"optimizer.muon_momentum"' "$W/a/step_000006.safetensors" && ok "the checkpoint holds optimizer.muon_momentum" || bad "no optimizer.muon_momentum tensor in the checkpoint"
# the momentum matters: a Muon run differs from an AdamW run of the same config
$CLF train configs/tiny.json $SMALL --device cpu --steps 6 --out "$W/c" --quiet || bad "train c (adamw)"
cmp -s "$W/a/step_000006.safetensors" "$W/c/step_000006.safetensors" && bad "muon and adamw gave the same checkpoint" || ok "muon and adamw train differently"
grep -aq '"optimizer.muon_momentum"' "$W/c/step_000006.safetensors" && bad "an adamw checkpoint holds Muon momentum" || ok "an adamw checkpoint holds no Muon momentum"
"$CLF" generate "$W/a" --prompt "ab" --tokens 5 --seed 1 --device cpu >/dev/null 2>&1 && ok "generate loads a Muon checkpoint" || bad "generate on a Muon checkpoint"

# 2. one line each, naming the field and the fix, non-zero exit
expect_err() { # name pattern command...
  local name=$1 pat=$2; shift 2
  local msg rc
  msg=$("$@" 2>&1 >/dev/null); rc=$?
  if [ $rc -ne 0 ] && echo "$msg" | grep -q -- "$pat" && [ "$(echo "$msg" | grep -c .)" -eq 1 ]; then ok "$name: $msg"
  else bad "$name (rc=$rc): $msg"; fi
}
expect_err "resume a muon checkpoint with adamw" "trained with optimizer muon but the config says optimizer adamw; .*resume with optimizer=muon" \
  $CLF train configs/tiny.json $SMALL --device cpu --steps 8 --resume "$W/a" --out "$W/x"
expect_err "resume an adamw checkpoint with muon" "trained with optimizer adamw but the config says optimizer muon; .*resume with optimizer=adamw" \
  $CLF train configs/tiny.json $SMALL optimizer=muon --device cpu --steps 8 --resume "$W/c" --out "$W/x"
expect_err "unknown optimizer" "command line: unknown optimizer 'muom'; did you mean 'muon'?" \
  $CLF train configs/tiny.json optimizer=muom --steps 1 --out "$W/x"
expect_err "unknown schedule" "command line: unknown lr_schedule 'wds'; did you mean 'wsd'?" \
  $CLF train configs/tiny.json lr_schedule=wds --steps 1 --out "$W/x"
expect_err "unknown schedule, no near name" "unknown lr_schedule 'linear'; use one of: cosine, wsd, constant" \
  $CLF train configs/tiny.json lr_schedule=linear --steps 1 --out "$W/x"
expect_err "decay_fraction above 1" "command line: decay_fraction (1.5) must be in \[0, 1\]" \
  $CLF train configs/tiny.json decay_fraction=1.5 --steps 1 --out "$W/x"
printf '{"optimizer": "adam", "decay_fraction": -0.1}\n' > "$W/opt.json"
expect_err "unknown optimizer in a file" "config $W/opt.json: unknown optimizer 'adam'; did you mean 'adamw'?" \
  $CLF train "$W/opt.json" --steps 1 --out "$W/x"
printf '{"lr_schedule": "wsd", "decay_fraction": -0.1}\n' > "$W/df.json"
expect_err "decay_fraction below 0 in a file" "config $W/df.json: decay_fraction (-0.1) must be in \[0, 1\]" \
  $CLF train "$W/df.json" --steps 1 --out "$W/x"
expect_err "muon_momentum of 1" "muon_momentum (1) must be in \[0, 1)" \
  $CLF train configs/tiny.json optimizer=muon muon_momentum=1 --steps 1 --out "$W/x"
expect_err "--target-loss without a validation split" "--target-loss 3 needs validation data, but val_fraction is 0" \
  $CLF train configs/tiny.json $SMALL val_fraction=0 --target-loss 3 --device cpu --steps 2 --out "$W/x"
expect_err "--target-loss without evaluations" "--target-loss 3 is checked at each validation, but eval_interval is 0" \
  $CLF train configs/tiny.json $SMALL --target-loss 3 --device cpu --steps 2 --out "$W/x"
expect_err "--target-loss not a number" "--target-loss expects a number" \
  $CLF train configs/tiny.json $SMALL --target-loss low --device cpu --steps 2 --out "$W/x"
[ -e "$W/x" ] && bad "a refused run created its output directory" || true

# 3. keys that do nothing are named in a warning; the run goes on
msg=$($CLF train configs/tiny.json $SMALL muon_lr=0.05 muon_momentum=0.9 decay_fraction=0.3 --device cpu --steps 1 --out "$W/w" --quiet 2>&1); rc=$?
if [ $rc -eq 0 ] && echo "$msg" | grep -q "warning: .*muon_lr, muon_momentum are ignored with optimizer \"adamw\"; set optimizer to \"muon\"" &&
   echo "$msg" | grep -q "warning: .*decay_fraction is ignored with lr_schedule \"cosine\"; set lr_schedule to \"wsd\""; then
  ok "Muon keys with adamw and decay_fraction with cosine: warnings name them, the run goes on"
else
  bad "warnings for ignored keys (rc=$rc): $msg"
fi
msg=$($CLF train configs/tiny.json $SMALL optimizer=muon muon_lr=0.05 --device cpu --steps 1 --out "$W/w2" --quiet 2>&1)
echo "$msg" | grep -q "ignored" && bad "a warning with optimizer muon: $msg" || ok "no warning when the Muon keys are used"

# 4. --target-loss: an easy target stops the run early, with the figures printed and logged
msg=$($CLF train configs/tiny.json $SMALL $MUON eval_interval=5 eval_batches=2 --device cpu --steps 200 --target-loss 4.0 --out "$W/t" --log "$W/t.jsonl" 2>&1); rc=$?
line=$(echo "$msg" | grep "target loss 4 reached")
if [ $rc -eq 0 ] && echo "$line" | grep -Eq "reached at step [0-9]+: val loss [0-9.]+ after [0-9.]+ s wall time and [0-9]+ training tokens; checkpoint"; then
  ok "--target-loss stops and prints: $line"
else
  bad "--target-loss (rc=$rc): $msg"
fi
python3 - "$W/t.jsonl" "$W/t" <<'PY' && ok "--log gets the target record; the run stopped early with a checkpoint at that step" || bad "--target-loss log/checkpoint"
import json, os, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
t = rows[-1]
assert t["target_reached"] is True and t["target_loss"] == 4.0, t
assert t["val_loss"] <= 4.0 and t["wall_time_s"] > 0, t
step = t["step"]
assert step < 200 and step % 5 == 0, t
assert t["tokens"] == step * 4 * 32, t          # batch 4 x 32, no accumulation
assert rows[-2] == {"step": step, "val_loss": t["val_loss"]}, rows[-2]  # the evaluation's record
assert rows[-3]["step"] == step and "muon_lr" in rows[-3], rows[-3]
assert os.path.exists(os.path.join(sys.argv[2], "step_%06d.safetensors" % step)), os.listdir(sys.argv[2])
PY
msg=$($CLF train configs/tiny.json $SMALL eval_interval=2 eval_batches=1 --device cpu --steps 2 --target-loss 0.01 --out "$W/u" --log "$W/u.jsonl" 2>&1); rc=$?
if [ $rc -eq 0 ] && echo "$msg" | grep -q "warning: target loss 0.01 not reached in 2 steps" && grep -q '"target_reached": false' "$W/u.jsonl"; then
  ok "an unreached target: a warning and a record saying so"
else
  bad "unreached target (rc=$rc): $msg"
fi
exit $fail
