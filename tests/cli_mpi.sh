#!/bin/bash
# clformer test: data-parallel training over MPI (issue 16). 2 ranks x batch b train exactly what
# one process with grad_accum_steps 2 x batch b trains (losses within 1e-6 relative over 10 steps,
# final weights within 1e-5) on the CPU backend and on OpenCL (PoCL); resume under MPI equals the
# uninterrupted run and resume with another rank count continues the same data; a killed rank or
# one rank's error stops every rank within seconds with the reason; a config that differs between
# ranks is refused. Skipped (77) without mpirun or without an MPI build, unless CF_REQUIRE_MPI=1.
set -u
CLF=$1
SRC=$2
W=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$W"' EXIT
. "$(dirname "$0")/cli_common.sh" # fail=0; ok, bad, expect_bad
skip() {
  if [ "${CF_REQUIRE_MPI:-0}" = 1 ]; then echo "FAIL - $* (CF_REQUIRE_MPI=1)"; exit 1; fi
  echo "SKIP - $*"; exit 77
}
cd "$SRC" || exit 1
command -v mpirun >/dev/null 2>&1 || skip "mpirun not found (apt-get install openmpi-bin libopenmpi-dev)"
# one thread per rank (2 ranks share 2 cores) and yield while waiting; CMA needs ptrace rights
# containers often lack
export OMP_NUM_THREADS=1 OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_mpi_yield_when_idle=1
MPI="mpirun --oversubscribe --allow-run-as-root --bind-to none"
SMALL="d_model=32 num_heads=2 num_layers=2 d_ff=80 max_length=32 batch_size=4 eval_interval=0 log_interval=1 warmup_steps=2 steps=10"

out=$($MPI -np 2 "$CLF" train configs/tiny.json $SMALL --device cpu --steps 1 --out "$W/probe" --quiet 2>&1)
if echo "$out" | grep -q "built without MPI"; then skip "clformer was built without MPI (CF_MPI)"; fi
[ -f "$W/probe/step_000001.safetensors" ] || { echo "$out"; bad "mpirun -np 2 did not train one step"; exit 1; }

# compare A B: step logs (loss, grad_norm within 1e-6 relative) and the last checkpoints' tensors
# (weights and AdamW state within 1e-5) and data cursor
compare() {
  python3 - "$@" <<'PY'
import json, struct, sys, array
a, b = sys.argv[1], sys.argv[2]
def log(p):
    return [json.loads(l) for l in open(p + ".jsonl")]
la, lb = log(a), log(b)
assert len(la) == len(lb) and la, (len(la), len(lb))
for ra, rb in zip(la, lb):
    for k in ("loss", "grad_norm"):
        d = abs(ra[k] - rb[k]) / max(abs(ra[k]), 1e-12)
        assert d <= 1e-6, "step %d %s: %r vs %r (rel %.3g)" % (ra["step"], k, ra[k], rb[k], d)
def load(p):
    raw = open(p, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    meta = h.pop("__metadata__")
    t = {}
    for name, d in h.items():
        s, e = d["data_offsets"]
        t[name] = array.array("f", raw[8 + n + s:8 + n + e])
    return meta, t
step = la[-1]["step"]
ma, ta = load("%s/step_%06d.safetensors" % (a, step))
mb, tb = load("%s/step_%06d.safetensors" % (b, step))
assert ta.keys() == tb.keys()
worst = 0.0
for k in ta:
    worst = max(worst, max(abs(x - y) for x, y in zip(ta[k], tb[k])))
assert worst <= 1e-5, "max |weight difference| %.3g > 1e-5" % worst
for k in ("data_epoch", "data_index", "tokens_seen", "step"):
    assert ma[k] == mb[k], (k, ma[k], mb[k])
print("%d steps, %d tensors, max |diff| %.3g, data cursor %s" % (step, len(ta), worst, ma["data_index"]))
PY
}

# 1. CPU backend: 2 ranks x batch 4 == 1 process x grad_accum_steps 2 x batch 4 (small buckets:
#    several all-reduces per step, started from the backward)
"$CLF" train configs/tiny.json $SMALL grad_accum_steps=2 --device cpu --out "$W/c1" --log "$W/c1.jsonl" --quiet || bad "1 process, grad_accum_steps 2"
$MPI -np 2 "$CLF" train configs/tiny.json $SMALL --device cpu --bucket-mb 0.01 --out "$W/c2" --log "$W/c2.jsonl" --quiet || bad "mpirun -np 2"
r=$(compare "$W/c1" "$W/c2" 2>&1) && ok "CPU: 2 ranks equal 1 process with grad_accum_steps 2 ($r)" || bad "CPU: 2 ranks differ from 1 process: $r"

# the Llama-style family (untied head, RoPE, SwiGLU, RMSNorm, shared blocks) with accumulation on
# each rank: 2 ranks x grad_accum_steps 2 == 1 process x grad_accum_steps 4
LL="d_model=32 num_heads=4 num_kv_heads=2 num_layers=4 share_layers=2 d_ff=48 max_length=32 batch_size=2 eval_interval=0 log_interval=1 warmup_steps=2 steps=10"
"$CLF" train configs/llama_tiny.json $LL grad_accum_steps=4 --device cpu --out "$W/l1" --log "$W/l1.jsonl" --quiet || bad "llama: 1 process"
$MPI -np 2 "$CLF" train configs/llama_tiny.json $LL grad_accum_steps=2 --device cpu --bucket-mb 0.004 --comm thread --out "$W/l2" --log "$W/l2.jsonl" --quiet || bad "llama: mpirun -np 2"
r=$(compare "$W/l1" "$W/l2" 2>&1) && ok "CPU, Llama-style with shared blocks, communication thread: 2 ranks x accum 2 equal 1 process x accum 4 ($r)" || bad "llama: $r"

# 2. --profile under MPI reports the all-reduce
p=$($MPI -np 2 "$CLF" train configs/tiny.json $SMALL --device cpu --bucket-mb 0.01 --profile --profile-steps 3 --out "$W/p" --quiet 2>&1)
echo "$p" | grep -Eq "gradient all-reduce over 2 ranks \(per step, 3 steps\): 0\.[0-9]+ MB in [0-9.]+ buckets \| in flight" && ok "--profile shows the all-reduce time, bytes and overlap" || bad "--profile: $p"

# 3. resume under MPI == uninterrupted; resume with another rank count continues the same data
$MPI -np 2 "$CLF" train configs/tiny.json $SMALL --device cpu --stop-after 4 --out "$W/r" --quiet || bad "mpirun: first 4 steps"
$MPI -np 2 "$CLF" train configs/tiny.json $SMALL --device cpu --resume "$W/r" --out "$W/r" --quiet || bad "mpirun: resumed"
cmp -s "$W/c2/step_000010.safetensors" "$W/r/step_000010.safetensors" && ok "resume under MPI is identical to the uninterrupted MPI run" || bad "resume under MPI differs"
"$CLF" train configs/tiny.json $SMALL grad_accum_steps=2 --device cpu --stop-after 4 --out "$W/n" --log "$W/n.jsonl" --quiet || bad "1 process: first 4 steps"
$MPI -np 2 "$CLF" train configs/tiny.json $SMALL --device cpu --resume "$W/n" --out "$W/n" --log "$W/n.jsonl" --quiet 2>/dev/null || bad "resumed on 2 ranks"
r=$(compare "$W/c1" "$W/n" 2>&1) && ok "1 process for 4 steps, resumed on 2 ranks, equals 1 process throughout ($r)" || bad "resume with another rank count: $r"

# 4. a config that differs between ranks is refused, naming the key
e=$(timeout 60 $MPI -np 1 "$CLF" train configs/tiny.json $SMALL --device cpu --out "$W/x" : \
    -np 1 "$CLF" train configs/tiny.json $SMALL learning_rate=0.01 --device cpu --out "$W/x" 2>&1)
rc=$?
[ $rc -ne 0 ] && echo "$e" | grep -q "learning_rate 0.01 here, 0.003 on rank 0" && ok "a config that differs between ranks is refused ($(echo "$e" | grep -m1 'here,'))" || bad "differing config: rc $rc: $e"
ls "$W"/x/step_* >/dev/null 2>&1 && bad "the refused run saved a checkpoint"

# 5. one rank's error (its device does not exist) stops every rank with that rank's message
t0=$(date +%s)
e=$(timeout 60 $MPI -np 2 "$CLF" train configs/tiny.json $SMALL --device cpu,opencl:9:9 --out "$W/d" 2>&1)
rc=$?
dt=$(( $(date +%s) - t0 ))
[ $rc -ne 0 ] && [ $rc -ne 124 ] && [ $dt -le 20 ] && echo "$e" | grep -q "^rank 1: error: .*opencl:9:9" && ok "one rank's bad device stops all ranks in ${dt}s with its message ($(echo "$e" | grep -m1 '^rank 1: error'))" || bad "one rank's error: rc $rc after ${dt}s: $e"

# 6. kill -9 one rank mid-run: every rank exits non-zero within seconds, and the reason is named
$MPI -np 2 "$CLF" train configs/tiny.json $SMALL --steps 1000000 --device cpu --out "$W/k" --log "$W/k.jsonl" >"$W/k.out" 2>&1 &
mp=$!
for _ in $(seq 1 300); do [ -s "$W/k.jsonl" ] && break; sleep 0.1; done
ranks=$(pgrep -P $mp)
if [ -z "$ranks" ] || [ ! -s "$W/k.jsonl" ]; then
  bad "the run to kill did not start: $(cat "$W/k.out")"
  kill $mp 2>/dev/null
else
  victim=$(echo "$ranks" | tail -1)
  t0=$(date +%s.%N)
  kill -9 "$victim"
  for _ in $(seq 1 200); do kill -0 $mp 2>/dev/null || break; sleep 0.1; done
  wait $mp
  rc=$?
  dt=$(python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$t0" "$(date +%s.%N)")
  alive=""
  # a zombie has exited (in a container without an init, nobody may reap it)
  for p in $ranks; do
    st=$(ps -o stat= -p "$p" 2>/dev/null)
    [ -n "$st" ] && [ "${st#Z}" = "$st" ] && alive="$alive $p"
  done
  if [ $rc -ne 0 ] && [ -z "$alive" ] && python3 -c "import sys; sys.exit(float(sys.argv[1]) > 10)" "$dt" &&
     grep -q "signal 9" "$W/k.out"; then
    ok "kill -9 of one rank: mpirun exits $rc and every rank is gone after ${dt}s ($(grep -m1 'signal 9' "$W/k.out" | sed 's/^ *//'))"
  else
    bad "kill -9 of one rank: rc $rc after ${dt}s, still alive:${alive:- none}; $(cat "$W/k.out")"
    for p in $alive; do kill -9 "$p"; done
  fi
fi

# 7. Ctrl-C to mpirun (it passes SIGTERM to the ranks): every rank stops at the same step and rank 0
#    saves a checkpoint the run resumes from
#    (a grace of 3 s instead of mpirun's 1 s before SIGKILL, for a loaded CI machine's disk; a
#    rank stuck in a write to its full output pipe would still be killed, as before the fix)
OMPI_MCA_odls_base_sigkill_timeout=3 $MPI -np 2 "$CLF" train configs/tiny.json $SMALL --steps 1000000 checkpoint_interval=100000 --device cpu --out "$W/i" --log "$W/i.jsonl" >"$W/i.out" 2>&1 &
mp=$!
for _ in $(seq 1 300); do [ -s "$W/i.jsonl" ] && break; sleep 0.1; done
kill -INT $mp
for _ in $(seq 1 200); do kill -0 $mp 2>/dev/null || break; sleep 0.1; done
wait $mp
ck=$(ls "$W"/i/step_*.safetensors 2>/dev/null | tail -1)
# (the "interrupted at step" line may not reach mpirun's output: mpirun stops forwarding once its
# teardown starts, so the log's interruption record is what says it)
if [ -n "$ck" ] && grep -q "\"interrupted\":true,\"checkpoint\":\"$ck\"" "$W/i.jsonl" &&
  ! ls "$W"/i/*.tmp >/dev/null 2>&1; then
  $MPI -np 2 "$CLF" train configs/tiny.json $SMALL --steps 1000000 checkpoint_interval=100000 --device cpu --resume "$ck" --out "$W/i" --stop-after 1 --quiet &&
    ok "Ctrl-C under mpirun saves $(basename "$ck") on rank 0 and the run resumes from it" || bad "resume after Ctrl-C under mpirun failed"
else
  bad "Ctrl-C under mpirun: no checkpoint (in $W/i: $(ls "$W/i" | tr '\n' ' '); $(grep -v '^step ' "$W/i.out" | tail -3))"
fi

# 8. the same equality on OpenCL (PoCL here) when a device is there
if "$CLF" devices 2>/dev/null | grep -q "opencl:"; then
  export CF_CACHE_DIR="$W/cache"
  "$CLF" train configs/tiny.json $SMALL grad_accum_steps=2 --device opencl --out "$W/o1" --log "$W/o1.jsonl" --quiet || bad "OpenCL: 1 process"
  $MPI -np 2 "$CLF" train configs/tiny.json $SMALL --device opencl --bucket-mb 0.01 --out "$W/o2" --log "$W/o2.jsonl" --quiet || bad "OpenCL: mpirun -np 2"
  r=$(compare "$W/o1" "$W/o2" 2>&1) && ok "OpenCL: 2 ranks equal 1 process with grad_accum_steps 2 ($r)" || bad "OpenCL: $r"
  # the path GPUs take: pinned staging, a communication thread
  $MPI -np 2 "$CLF" train configs/tiny.json $SMALL --device opencl --bucket-mb 0.01 --comm thread --out "$W/o3" --log "$W/o3.jsonl" --quiet || bad "OpenCL, thread: mpirun -np 2"
  r=$(compare "$W/o1" "$W/o3" 2>&1) && ok "OpenCL, communication thread: 2 ranks equal 1 process with grad_accum_steps 2 ($r)" || bad "OpenCL, thread: $r"
elif [ "${CF_REQUIRE_OPENCL:-0}" = 1 ]; then
  bad "no OpenCL device (CF_REQUIRE_OPENCL=1)"
else
  echo "skip - OpenCL: no device"
fi

exit $fail
