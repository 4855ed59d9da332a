#!/bin/bash
# clformer test: training and checkpoint safety at the CLI: logits past 4096 ids and bad ids, the
# --out lock (a second run refused, a dead run's lock ignored), rollback resume keeping the new
# run's checkpoints, --resume refusing shape/tokenizer changes and naming run-time ones, NaN/Inf
# and negative-v checkpoints refused by resume/eval/generate/export, --out checks (empty, too
# long, unwritable, too little space), failed saves retried then reported with the last good
# checkpoint, --log on a full disk, crashed-save temp files removed, and --log trimmed on resume.
set -u
CLF=$1
SRC=$2
W=$(mktemp -d)
cleanup() {
  [ -n "${BGPID:-}" ] && kill -9 "$BGPID" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
. "$(dirname "$0")/cli_common.sh" # fail=0; ok, bad, expect_bad
cd "$SRC" || exit 1
SMALL="d_model=32 num_heads=2 num_layers=2 d_ff=80 max_length=32 batch_size=4 eval_interval=0 log_interval=1 warmup_steps=2"
T="$CLF train configs/tiny.json $SMALL --device cpu"

# expect_err NAME PATTERN CMD...: non-zero exit and a message holding PATTERN
expect_err() {
  local name=$1 pat=$2; shift 2
  local msg rc
  msg=$("$@" 2>&1 >/dev/null); rc=$?
  if [ $rc -ne 0 ] && [ $rc -lt 128 ] && echo "$msg" | grep -q -- "$pat"; then ok "$name: $(echo "$msg" | head -1)"
  else bad "$name (rc=$rc): $msg"; fi
}

# 1. logits: a context longer than 4096 (heap, not a stack array), the context bound, bad ids
$CLF train configs/tiny.json d_model=8 num_heads=1 num_layers=1 d_ff=8 max_length=5000 batch_size=1 \
  steps=1 val_fraction=0 eval_interval=0 --device cpu --out "$W/long" --quiet || bad "train the max_length=5000 model"
ids=$(seq 1 5000 | awk '{printf "%d ", $1 % 256}')
$CLF logits "$W/long" --tokens "$ids" --out "$W/l.bin" 2>"$W/l.err"; rc=$?
[ $rc -eq 0 ] && [ "$(stat -c %s "$W/l.bin" 2>/dev/null)" = $((5000 * 256 * 4)) ] &&
  ok "logits of 5000 ids on a max_length 5000 model" || bad "logits of 5000 ids (rc=$rc): $(cat "$W/l.err")"
expect_err "logits past the context" "max_length) is 5000" $CLF logits "$W/long" --tokens "$ids 7" --out "$W/l.bin"
expect_err "logits with a non-numeric id" "'abc'" $CLF logits "$W/long" --tokens "1 2 abc 3" --out "$W/l.bin"
expect_err "logits with '12x'" "'12x'" $CLF logits "$W/long" --tokens "1 12x" --out "$W/l.bin"

# 2. one training per --out
# (the holder saves no checkpoint: checkpoint_interval=0, and it is killed, so any checkpoint in
# the directory afterwards was written by the refused run)
$T --steps 1000000 checkpoint_interval=0 --out "$W/lock" --log "$W/lock.jsonl" --quiet 2>/dev/null &
BGPID=$!
for _ in $(seq 1 300); do [ -s "$W/lock.jsonl" ] && break; sleep 0.1; done
expect_err "a second run into a busy --out" "PID $BGPID" $T --steps 2 --out "$W/lock" --quiet
ls "$W"/lock/step_*.safetensors >/dev/null 2>&1 && bad "the refused run wrote a checkpoint" || true
kill -9 $BGPID; wait $BGPID 2>/dev/null; BGPID=
[ -f "$W/lock/clformer.lock" ] || bad "the killed run left no lock file (this check needs one)"
$T --steps 2 --out "$W/lock" --quiet && ok "a lock file left by a killed run does not block" || bad "stale lock blocked a run"
[ -e "$W/lock/clformer.lock" ] && bad "lock file not removed at the end of a run" || ok "lock file removed at the end"

# 3. rollback: resume step 5 into the --out that holds step 10; the new run's files stay
$T --steps 10 checkpoint_interval=5 --out "$W/rb" --quiet || bad "train rb"
$T --steps 10 checkpoint_interval=1 --stop-after 2 --resume "$W/rb/step_000005.safetensors" --out "$W/rb" 2>"$W/rb.err" || bad "rollback resume: $(cat "$W/rb.err")"
if [ -f "$W/rb/step_000006.safetensors" ] && [ -f "$W/rb/step_000007.safetensors" ]; then
  ok "rollback resume keeps the new run's checkpoints ($(ls "$W/rb" | tr '\n' ' '))"
else bad "rollback resume deleted the new run's checkpoints: $(ls "$W/rb" | tr '\n' ' ')"; fi
[ -f "$W/rb/step_000010.safetensors" ] && ok "the other run's later checkpoint is kept" || bad "step_000010 deleted"
grep -q "past step 5" "$W/rb.err" && ok "rollback warns about the later checkpoints" || bad "no rollback warning: $(cat "$W/rb.err")"

# 4. --resume: shape and tokenizer refused, run-time settings named
$T --steps 4 --stop-after 2 --out "$W/r" --quiet || bad "train r"
expect_err "resume with another num_heads" "num_heads.2.*num_heads.4" $T num_heads=4 --steps 4 --resume "$W/r" --out "$W/r2"
expect_err "resume with another d_ff" "shape" $T d_ff=64 --steps 4 --resume "$W/r" --out "$W/r2"
expect_err "resume with another tokenizer" "tokenizer" $T tokenizer=tokenizers/wiki16k.json vocab_size=16384 --steps 4 --resume "$W/r" --out "$W/r2"
msg=$($T learning_rate=0.001 batch_size=2 --steps 4 --resume "$W/r" --out "$W/r3" 2>&1); rc=$?
[ $rc -eq 0 ] && echo "$msg" | grep -q "learning_rate changed from 0.003 to 0.001" &&
  echo "$msg" | grep -q "batch_size changed from 4 to 2" && ok "resume names each run-time change" ||
  bad "resume with run-time changes (rc=$rc): $msg"
msg=$($T --steps 4 --resume "$W/r" --out "$W/r4" 2>&1); rc=$?
[ $rc -eq 0 ] && ! echo "$msg" | grep -q "changed from" && ok "an unchanged resume names nothing" || bad "plain resume: $msg"

# 5. non-finite weights / negative AdamW v are refused everywhere
patch() { # SRC DST TENSOR INDEX VALUE: copy of a safetensors file with one float32 replaced
  python3 - "$@" <<'PY'
import json, struct, sys
src, dst, name, idx, val = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
b = bytearray(open(src, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
off = 8 + n + h[name]["data_offsets"][0] + 4 * idx
b[off:off + 4] = struct.pack("<f", val)
open(dst, "wb").write(b)
PY
}
ck="$W/r/step_000002.safetensors"
patch "$ck" "$W/nan.safetensors" wte 5 nan || bad "patching a NaN in"
patch "$ck" "$W/negv.safetensors" optimizer.adamw_v 9 -0.5 || bad "patching a negative v in"
expect_err "eval of a NaN checkpoint" "'wte' holds nan" $CLF eval "$W/nan.safetensors" --data data/tiny_corpus.txt --device cpu
expect_err "generate from a NaN checkpoint" "'wte' holds nan" $CLF generate "$W/nan.safetensors" --tokens 5 --device cpu
expect_err "export of a NaN checkpoint" "'wte' holds" $CLF export "$W/nan.safetensors" --format hf "$W/hfnan"
expect_err "resume from a NaN checkpoint" "'wte' holds nan" $T --steps 4 --resume "$W/nan.safetensors" --out "$W/n1"
expect_err "resume with a negative AdamW v" "adamw_v' holds the negative" $T --steps 4 --resume "$W/negv.safetensors" --out "$W/n2"

# 6. --out: empty, too long, unwritable, too little space
expect_err "--out \"\"" "empty" $T --steps 1 --out ""
long=$(printf 'd%.0s' $(seq 1 6000))
expect_err "6000-character --out" "characters long" $T --steps 1 --out "$W/$long"
if [ -d /proc/self ]; then
  expect_err "unwritable --out" "/proc/clformer.lock" $T --steps 1 --out /proc
fi
if unshare -rm true 2>/dev/null; then
  # one checkpoint of this model (d_model 96) is about 3 MiB: a 1 MiB filesystem cannot hold it
  msg=$(unshare -rm bash -c "mkdir -p '$W/mnt' && mount -t tmpfs -o size=1m tmpfs '$W/mnt' && \
        $CLF train configs/tiny.json $SMALL d_model=96 --device cpu --steps 3 --out '$W/mnt/o'" 2>&1); rc=$?
  [ $rc -ne 0 ] && echo "$msg" | grep -q "MiB free" && ! echo "$msg" | grep -q "step " &&
    ok "too little space is found before training: $(echo "$msg" | grep 'MiB free')" || bad "space check (rc=$rc): $msg"
  # room for one checkpoint and a half: the first save works, later ones fail, training goes on
  # and then stops naming the checkpoint that was saved
  kb=$(( $(stat -c %s "$W/r/step_000002.safetensors") * 3 / 2 / 1024 + 64 ))
  msg=$(unshare -rm bash -c "mkdir -p '$W/mnt' && mount -t tmpfs -o size=${kb}k tmpfs '$W/mnt' && \
        $CLF train configs/tiny.json $SMALL --device cpu --steps 8 checkpoint_interval=1 --out '$W/mnt/o' && \
        ls '$W/mnt/o'" 2>&1); rc=$?
  if [ $rc -ne 0 ] && [ "$(echo "$msg" | grep -c 'checkpoint not saved; training goes on')" -eq 2 ] &&
     echo "$msg" | grep -q "stopped at step 4; the last good checkpoint is $W/mnt/o/step_000001.safetensors"; then
    ok "full disk: two saves retried, then stopped naming the last good checkpoint"
  else bad "full disk during training (rc=$rc): $msg"; fi
else
  echo "skip - unshare -rm is not available: free-space checks not run"
fi

# 7. --log on a full disk: said once, training finishes
msg=$($T --steps 3 --out "$W/full" --log /dev/full 2>&1); rc=$?
[ $rc -eq 0 ] && [ "$(echo "$msg" | grep -c -- '--log /dev/full')" -eq 1 ] && [ -f "$W/full/step_000003.safetensors" ] &&
  ok "--log /dev/full is reported once and training completes" || bad "--log /dev/full (rc=$rc): $msg"

# 8. a tokenizer path naming a directory
expect_err "tokenizer= a directory" "is a directory" $T tokenizer=tokenizers --steps 1 --out "$W/tokdir"
$T tokenizer=tokenizers --steps 1 --out "$W/tokdir" 2>&1 | grep -q "out of memory" && bad "tokenizer directory reported as out of memory" || true

# 9. a crashed save's temp file is removed by the next run in that directory (the crash is
# simulated by clformer-fi, the test build of the CLI with the fault-injection hooks)
FI="$(dirname "$CLF")/clformer-fi"
CF_FAULT_SAVE_CRASH=1 $FI train configs/tiny.json $SMALL --device cpu --steps 2 --out "$W/crash" --quiet 2>/dev/null
ls "$W"/crash/step_000002.safetensors.*.tmp >/dev/null 2>&1 || bad "the simulated crash left no temp file (this check needs one)"
$T --steps 1 --out "$W/crash" --quiet || bad "run after the crash"
ls "$W"/crash/*.tmp >/dev/null 2>&1 && bad "crashed save's temp file still there: $(ls "$W/crash")" || ok "crashed save's temp file removed"

# 10. --log after a crash and resume: each step once
$T --steps 5 checkpoint_interval=2 --out "$W/lg" --log "$W/lg.jsonl" --quiet || bad "train lg"
rm "$W/lg/step_000005.safetensors"           # as if killed after step 5 was logged, before its save
printf '{"step": 6, "lo' >> "$W/lg.jsonl"   # and in the middle of a record
$T --steps 6 checkpoint_interval=2 --resume "$W/lg" --out "$W/lg" --log "$W/lg.jsonl" --quiet || bad "resume lg"
steps=$(python3 -c 'import json,sys; print(" ".join(str(json.loads(l)["step"]) for l in open(sys.argv[1])))' "$W/lg.jsonl" 2>&1)
[ "$steps" = "1 2 3 4 5 6" ] && ok "--log holds each step once after resume ($steps)" || bad "--log steps after resume: $steps"
# the same with a real kill -9
$T --steps 1000000 checkpoint_interval=7 --out "$W/k9" --log "$W/k9.jsonl" --quiet 2>/dev/null &
BGPID=$!
for _ in $(seq 1 300); do [ "$( { wc -l < "$W/k9.jsonl"; } 2>/dev/null || echo 0)" -ge 12 ] && break; sleep 0.05; done
kill -9 $BGPID; wait $BGPID 2>/dev/null; BGPID=
last=$(python3 -c 'import json,sys; print(max(json.loads(l)["step"] for l in open(sys.argv[1]) if l.endswith("\n")))' "$W/k9.jsonl")
$T --steps $((last + 3)) checkpoint_interval=7 --resume "$W/k9" --out "$W/k9" --log "$W/k9.jsonl" --quiet || bad "resume after kill -9"
python3 - "$W/k9.jsonl" $((last + 3)) <<'PY' && ok "--log after kill -9 and resume: steps 1..$((last + 3)) once each" || bad "--log after kill -9 has duplicate or missing steps"
import json, sys
s = [json.loads(l)["step"] for l in open(sys.argv[1])]
assert s == list(range(1, int(sys.argv[2]) + 1)), s
PY
exit $fail
