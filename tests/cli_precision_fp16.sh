#!/bin/bash
# clformer test: precision fp16 on the CPU backend (GEMM inputs rounded to IEEE half, fp32
# accumulation and storage) with dynamic loss scaling. tiny.json (batch 8 x 64) for 20 steps:
# said once at start; the losses are not fp32's bit for bit but within 1% at every step and fall;
# every log record carries loss_scale 65536, skipped_steps 0 and skipped false. A forced overflow
# (loss_scale 2^30: the scaled gradients overflow half in the GEMMs) skips steps: grad_norm null,
# the scale halves and the counter grows at each, the progress line shows them, then the run
# recovers below the cap 2^24 and trains; a skipped step leaves the optimizer untouched (moments
# zero, opt_step 0, the weights independent of the learning rate). With loss_scale_window 3 the
# scale doubles after 3 good steps. N steps straight equal K steps + resume to N bit for bit
# (losses, norms, scales, counters), across skips and across a doubling. Bad loss_scale and
# loss_scale_window values are refused with one line naming the key; under fp32 the keys are
# ignored with a warning and change nothing. Gradients that overflow at every scale
# (clformer-fi's CF_FAULT_GRAD_INF) stop the run at scale 1 naming the last good checkpoint,
# which resumes. device auto trains with it (OpenCL devices:
# tests/cli_precision_half_cl.sh).
set -u
CLF=$1
SRC=$2
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
. "$(dirname "$0")/cli_common.sh" # fail=0; ok, bad, expect_bad
cd "$SRC" || exit 1
RUN="configs/tiny.json batch_size=8 max_length=64 eval_interval=0 log_interval=1 --device cpu"
losses() { grep -o '"loss": [^,]*' "$1" | sed 's/"loss": //'; }

# ---- fp16 against fp32 ---------------------------------------------------------------------
msg=$("$CLF" train $RUN --steps 20 --out "$W/h" --log "$W/h.jsonl" --precision fp16 2>&1 >/dev/null); rc=$?
[ $rc -eq 0 ] || bad "fp16 run failed (rc $rc): $msg"
n=$(printf '%s\n' "$msg" | grep -c "precision fp16: GEMM inputs rounded to fp16")
[ "$n" -eq 1 ] && ok "fp16 said once" || bad "fp16 note printed $n times: $msg"
"$CLF" train $RUN --steps 20 --out "$W/f" --log "$W/f.jsonl" --quiet >/dev/null 2>&1 || bad "fp32 run failed"
echo "fp32: $(losses "$W/f.jsonl" | tr '\n' ' ')"
echo "fp16: $(losses "$W/h.jsonl" | tr '\n' ' ')"
verdict=$(paste <(losses "$W/f.jsonl") <(losses "$W/h.jsonl") | awk '
  function abs(x) { return x < 0 ? -x : x }
  { n++; if (n == 1) { f = $2 } last = $2; d = abs($1 - $2) / $1; if (d > worst) worst = d;
    if ($1 != $2) diff++ }
  END { printf "%d %d %.6f %s\n", n, diff, worst, (n == 20 && diff > 0 && worst <= 0.01 && last < f - 1.0) ? "ok" : "bad" }')
set -- $verdict
[ "$4" = ok ] && ok "fp16 losses within 1% of fp32 at each of $1 steps (worst $3, $2 steps differ) and falling" \
  || bad "fp16 vs fp32: $verdict (steps, steps that differ, worst relative difference)"
python3 - "$W/h.jsonl" "$W/f.jsonl" <<'PY' && ok "fp16 records: loss_scale 65536, skipped_steps 0, skipped false; fp32 records have none of them" || bad "fp16/fp32 record fields"
import json, sys
h = [json.loads(l) for l in open(sys.argv[1])]
f = [json.loads(l) for l in open(sys.argv[2])]
assert len(h) == 20 and all(r["loss_scale"] == 65536 and r["skipped_steps"] == 0 and r["skipped"] is False for r in h), h[:2]
assert all("loss_scale" not in r and "skipped" not in r for r in f), f[:2]
PY

# ---- a forced overflow: loss_scale 2^30 ------------------------------------------------------
msg=$("$CLF" train $RUN --steps 16 --out "$W/o" --log "$W/o.jsonl" --precision fp16 loss_scale=1073741824 2>&1 >/dev/null); rc=$?
[ $rc -eq 0 ] || bad "overflow run failed (rc $rc): $msg"
python3 - "$W/o.jsonl" <<'PY' && ok "loss_scale 2^30: step 1 skipped (grad_norm null, scale 2^29, count 1); each skip halves the scale and counts; then it recovers at <= 2^24 and the loss falls" || bad "forced overflow records: $(head -c 600 "$W/o.jsonl")"
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
assert len(r) == 16, len(r)
a = r[0]
assert a["skipped"] is True and a["grad_norm"] is None and a["loss_scale"] == 2**29 and a["skipped_steps"] == 1, a
scale, count, good = 2**30, 0, []
for x in r:
    if x["skipped"]:
        scale, count = scale / 2, count + 1
        assert x["grad_norm"] is None, x
    else:
        assert x["grad_norm"] is not None and x["grad_norm"] > 0, x
        good.append(x)
    assert x["loss_scale"] == scale and x["skipped_steps"] == count, (x, scale, count)
assert 1 <= count <= 8 and len(good) >= 8, (count, len(good))
assert all(not x["skipped"] for x in r[count:]), "skips after the recovery"
assert scale <= 2**24
assert good[-1]["loss"] < r[0]["loss"] - 0.5, (r[0]["loss"], good[-1]["loss"])
print("skipped %d steps; scale then %g; loss %.4f -> %.4f" % (count, scale, r[0]["loss"], good[-1]["loss"]))
PY
line=$(printf '%s\n' "$msg" | grep '^step     1/')
printf '%s\n' "$line" | grep -q "scale 5.36871e+08 skipped 1 (skip)" && ok "progress line: $line" \
  || bad "progress line of the skipped step: $line"

# a skipped step leaves the optimizer untouched: after 1 skipped step the checkpoint's moments are
# zero, opt_step is 0, and the weights do not depend on the learning rate (both are the initial
# ones)
for lr in 0.001 0.005; do
  "$CLF" train $RUN --steps 1 --out "$W/s$lr" --precision fp16 loss_scale=1073741824 learning_rate=$lr weight_decay=0.1 --quiet >/dev/null 2>&1 \
    || bad "one skipped step (lr $lr) failed"
done
python3 - "$W/s0.001/step_000001.safetensors" "$W/s0.005/step_000001.safetensors" <<'PY' && ok "a skipped step: AdamW moments zero, opt_step 0, weights equal for two learning rates, scale 2^29 and skipped_steps 1 in the checkpoint" || bad "skipped step touched the model or optimizer"
import json, struct, sys
def read(p):
    b = open(p, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n]); meta = h.pop('__metadata__')
    return meta, {k: b[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]] for k, v in h.items()}
m1, t1 = read(sys.argv[1]); m2, t2 = read(sys.argv[2])
for k in ("optimizer.adamw_m", "optimizer.adamw_v"):
    assert t1[k] == bytes(len(t1[k])), k
assert m1["opt_step"] == "0" and m1["step"] == "1", m1
assert float(m1["loss_scale"]) == 2**29 and m1["skipped_steps"] == "1" and m1["loss_scale_good_steps"] == "0", m1
w = [k for k in t1 if not k.startswith("optimizer.")]
assert w and all(t1[k] == t2[k] for k in w)
PY

# ---- the scale doubles after loss_scale_window good steps -------------------------------------
"$CLF" train $RUN --steps 7 --out "$W/d" --log "$W/d.jsonl" --precision fp16 loss_scale_window=3 --quiet >/dev/null 2>&1 || bad "window run failed"
sc=$(grep -o '"loss_scale": [^,]*' "$W/d.jsonl" | sed 's/"loss_scale": //' | tr '\n' ' ')
[ "$sc" = "65536 65536 131072 131072 131072 262144 262144 " ] && ok "loss_scale_window 3: the scale doubles after steps 3 and 6: $sc" \
  || bad "loss_scale_window 3: scales $sc"

# ---- resume: N straight == K + resume to N, bit for bit --------------------------------------
# records without the timing fields
strip() { python3 -c '
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if int(r["step"]) > int(sys.argv[2]):
        for k in ("tokens_per_s", "ms_per_step"): r.pop(k, None)
        print(json.dumps(r, sort_keys=True))' "$@"; }
resume_case() { # NAME N K KEY=VALUE...
  local name=$1 N=$2 K=$3; shift 3
  local d="$W/r_$name"
  "$CLF" train $RUN --steps "$N" --out "$d/a" --log "$d/a.jsonl" --precision fp16 checkpoint_interval=0 "$@" --quiet >/dev/null 2>&1 \
    || { bad "$name: straight run failed"; return; }
  "$CLF" train $RUN --steps "$N" --out "$d/b" --log "$d/b.jsonl" --precision fp16 checkpoint_interval=0 --stop-after "$K" "$@" --quiet >/dev/null 2>&1 \
    || { bad "$name: first part failed"; return; }
  "$CLF" train $RUN --steps "$N" --out "$d/b" --log "$d/c.jsonl" --resume "$d/b" --precision fp16 checkpoint_interval=0 "$@" --quiet >/dev/null 2>&1 \
    || { bad "$name: resume failed"; return; }
  local a c
  a=$(strip "$d/a.jsonl" "$K"); c=$(strip "$d/c.jsonl" "$K")
  if [ -n "$a" ] && [ "$a" = "$c" ] && [ "$(printf '%s\n' "$c" | wc -l)" -eq $((N - K)) ]; then
    ok "$name: $N steps straight == $K + resume to $N (losses, norms, scales, counters): $(printf '%s\n' "$c" | tail -n 1)"
  else
    bad "$name: straight vs resumed records differ:"; diff <(echo "$a") <(echo "$c") | head -n 6
  fi
}
# across skips: 2^28 overflows, so the first steps are skipped and the checkpoint at step 3 holds
# a halved scale and a count
resume_case skips 10 3 loss_scale=268435456
# across a doubling: at step 4 one good step since the doubling at 3; the next comes at 6
resume_case window 8 4 loss_scale_window=3

# ---- bad values ------------------------------------------------------------------------------
expect_bad "loss_scale -1" "loss_scale (-1) must be 0 (the default initial scale, 65536) or in [1, 1e38]" "$W/e1" train $RUN --steps 1 --out "$W/e1" --precision fp16 loss_scale=-1
expect_bad "loss_scale 0.5" "loss_scale (0.5) must be 0 (the default initial scale, 65536) or in [1, 1e38]" "$W/e2" train $RUN --steps 1 --out "$W/e2" --precision fp16 loss_scale=0.5
expect_bad "loss_scale 1e39" "loss_scale (1e39) must be a finite number" "$W/e3" train $RUN --steps 1 --out "$W/e3" --precision fp16 loss_scale=1e39
expect_bad "loss_scale text" "loss_scale" "$W/e4" train $RUN --steps 1 --out "$W/e4" --precision fp16 loss_scale=big
expect_bad "loss_scale_window 0" "loss_scale_window" "$W/e5" train $RUN --steps 1 --out "$W/e5" --precision fp16 loss_scale_window=0
expect_bad "loss_scale_window 2.5" "loss_scale_window" "$W/e6" train $RUN --steps 1 --out "$W/e6" --precision fp16 loss_scale_window=2.5

# ---- other precisions: ignored with a warning, nothing changes ---------------------------------
msg=$("$CLF" train $RUN --steps 20 --out "$W/g" --log "$W/g.jsonl" loss_scale=1024 loss_scale_window=5 2>&1 >/dev/null); rc=$?
if [ $rc -eq 0 ] && [ "$(printf '%s\n' "$msg" | grep -c 'loss_scale and loss_scale_window are ignored with precision "fp32"')" -eq 1 ] \
   && [ "$(losses "$W/g.jsonl")" = "$(losses "$W/f.jsonl")" ]; then
  ok "fp32 with the loss-scaling keys: one warning, the same losses bit for bit"
else bad "fp32 with loss_scale: rc $rc: $msg"; fi

# ---- overflow at loss scale 1 (clformer-fi's CF_FAULT_GRAD_INF=3: from step 3 on every step's
# gradients read as overflowed) -----------------------------------------------------------------
FI="$(dirname "$CLF")/clformer-fi"
if [ -x "$FI" ]; then
  msg=$(CF_FAULT_GRAD_INF=3 "$FI" train configs/tiny.json d_model=32 num_heads=2 num_layers=2 d_ff=80 max_length=32 batch_size=4 eval_interval=0 log_interval=1 warmup_steps=2 checkpoint_interval=2 loss_scale=4 --precision fp16 --device cpu --steps 10 --out "$W/gi" --log "$W/gi.jsonl" 2>&1 >/dev/null); rc=$?
  steps=$(python3 -c "
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
print(' '.join('%d:%s:%g:%d' % (x['step'], 'skip' if x['skipped'] else 'ok', x['loss_scale'], x['skipped_steps']) for x in r))" "$W/gi.jsonl" 2>&1)
  if [ $rc -ne 0 ] && [ "$steps" = "1:ok:4:0 2:ok:4:0 3:skip:2:1 4:skip:1:2" ] \
     && printf '%s\n' "$msg" | grep -q "^error: step 5: the gradients hold inf or nan even at loss scale 1 (3 steps skipped); the model has diverged" \
     && printf '%s\n' "$msg" | grep -q "^error: training stopped at step 4; the last good checkpoint is $W/gi/step_000004.safetensors" \
     && [ -f "$W/gi/step_000004.safetensors" ]; then
    ok "overflow at every scale: steps 3-4 skipped (scale 4 -> 2 -> 1), step 5 stops the run naming the last good checkpoint"
  else bad "overflow at loss scale 1: rc $rc, steps [$steps]: $msg"; fi
  msg=$("$CLF" train configs/tiny.json d_model=32 num_heads=2 num_layers=2 d_ff=80 max_length=32 batch_size=4 eval_interval=0 log_interval=1 warmup_steps=2 checkpoint_interval=2 loss_scale=4 --precision fp16 --device cpu --steps 6 --resume "$W/gi/step_000004.safetensors" --out "$W/gr" --log "$W/gr.jsonl" 2>&1 >/dev/null); rc=$?
  [ $rc -eq 0 ] && grep -q '"step": 5, .*"loss_scale": 1, "skipped_steps": 2, "skipped": false' "$W/gr.jsonl" \
    && ok "the named checkpoint resumes: step 5 trains at the saved scale 1 with the 2 skips counted" \
    || bad "resume after the stop: rc $rc: $msg $(cat "$W/gr.jsonl" 2>/dev/null)"
else
  bad "$FI was not built"
fi

# ---- devices ---------------------------------------------------------------------------------
msg=$("$CLF" train configs/tiny.json batch_size=2 max_length=32 eval_interval=0 --steps 1 --device auto --out "$W/x" --precision fp16 2>&1 >/dev/null); rc=$?
if [ $rc -eq 0 ] && ! printf '%s\n' "$msg" | grep -q '^error:'; then
  ok "device auto with fp16 trains"
else bad "device auto with fp16: rc $rc: $msg"; fi
[ $fail -eq 0 ] && echo "PASS cli_precision_fp16" || echo "FAIL cli_precision_fp16"
exit $fail
