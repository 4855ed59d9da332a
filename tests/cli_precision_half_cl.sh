#!/bin/bash
# clformer test: precision bf16 (and fp16 where the build has it) on the OpenCL device (PoCL in CI:
# no matrix engine, so the register-blocked GEMM rounds its inputs as it stages them). A small
# tiny.json run for 12 steps: said once at start; the losses differ from the fp32 run's on the same
# device (the GEMMs really round) but stay within 1% of them and fall; on a CPU with AVX512-BF16
# the bf16 losses also follow the CPU backend's bf16 run (the same rounding of the same products)
# more closely than fp32's; the tensor-core GEMM (emulated) gives the bf16 run's losses in the
# whole step, and so does the GEMM on half operands (emulated); an fp32 checkpoint resumes under
# bf16 with a note. Skipped (77) without an OpenCL device.
set -u
CLF=$1
SRC=$2
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
. "$(dirname "$0")/cli_common.sh" # fail=0; ok, bad, expect_bad
cd "$SRC" || exit 1
if ! "$CLF" devices 2>/dev/null | grep -q "opencl:"; then
  echo "SKIP cli_precision_half_cl: no OpenCL device"
  exit 77
fi
# (CF_GEMM_FAST=1: on CPU devices the GEMM kernel is then compiled without optimisation, as in the
# kernel tests; it changes nothing else here, since bf16 and fp16 send every product to it anyway)
export CF_GEMM_FAST=1
RUN="configs/tiny.json d_model=64 num_heads=4 num_layers=2 d_ff=256 max_length=32 batch_size=8 eval_interval=0 log_interval=1 warmup_steps=2 checkpoint_interval=6 --steps 12"
losses() { grep -o '"loss":[^,]*' "$1" | sed 's/"loss"://'; }
# worst relative difference of two loss files, and how many steps differ
cmp_losses() { paste <(losses "$1") <(losses "$2") | awk 'function abs(x) { return x < 0 ? -x : x }
  { n++; if (n == 1) f = $2; last = $2; d = abs($1 - $2) / $1; if (d > w) w = d; if ($1 != $2) diff++ }
  END { printf "%d %d %.6f %d\n", n, diff, w, (last < f - 0.3) }'; }

"$CLF" train $RUN --device opencl --out "$W/a" --log "$W/a.jsonl" --quiet >/dev/null 2>&1 || bad "opencl fp32 run failed"
for p in bf16 fp16; do
  msg=$("$CLF" train $RUN --device opencl --out "$W/$p" --log "$W/$p.jsonl" --precision $p 2>&1 >/dev/null); rc=$?
  if [ $p = fp16 ] && printf '%s\n' "$msg" | grep -q "unknown precision 'fp16'"; then
    echo "(this build has no precision fp16)"; continue
  fi
  [ $rc -eq 0 ] || { bad "opencl $p run failed (rc $rc): $msg"; continue; }
  n=$(printf '%s\n' "$msg" | grep -c "precision $p: .*\(tensor cores\|rounded to $p in the kernel\)")
  [ "$n" -eq 1 ] && ok "opencl $p said once" || bad "opencl $p note printed $n times: $msg"
  set -- $(cmp_losses "$W/a.jsonl" "$W/$p.jsonl")
  [ "$1" -eq 12 ] && [ "$2" -gt 0 ] && awk "BEGIN { exit !($3 <= 0.01) }" && [ "$4" -eq 1 ] \
    && ok "opencl $p: 12 steps within 1% of fp32 (worst $3, $2 steps differ), falling" \
    || bad "opencl $p vs fp32: steps $1, differing $2, worst $3, falling $4"
done

# the tensor-core form of the GEMM in the whole training step, its mma.sync and conversions emulated
# (CF_MATRIX_ENGINE=emulate:nvidia-mma-sync): the same bf16 products as the bf16 run above (the
# portable form on PoCL; on a GPU with the engine, the engine itself), summed in another order, so
# the same losses to within 1e-4 (a wrong fragment or epilogue is far off)
if [ -s "$W/bf16.jsonl" ]; then
  msg=$(CF_MATRIX_ENGINE=emulate:nvidia-mma-sync "$CLF" train $RUN --device opencl --out "$W/e" --log "$W/e.jsonl" --precision bf16 2>&1 >/dev/null); rc=$?
  set -- $(cmp_losses "$W/bf16.jsonl" "$W/e.jsonl")
  [ $rc -eq 0 ] && printf '%s\n' "$msg" | grep -q "^precision bf16: GEMMs on .*tensor cores (emulated) .*(emulate:nvidia-mma-sync)" \
    && [ "$1" -eq 12 ] && awk "BEGIN { exit !($3 <= 1e-4) }" \
    && ok "opencl bf16 on the emulated tensor-core GEMM: 12 steps within 1e-4 of the bf16 run (worst $3)" \
    || bad "opencl bf16 emulated tensor cores: rc $rc, steps $1, worst $3: $msg"
fi

# the GEMM on half operands (CF_GEMM_HALF=1, gemm_half.cl emulated) in the whole training step:
# every plain product's operands converted once and multiplied on the (emulated) tensor cores,
# epilogues and the bias gradient's sums included, so again the bf16 run's losses to within 1e-4
if [ -s "$W/bf16.jsonl" ]; then
  msg=$(CF_GEMM_HALF=1 CF_MATRIX_ENGINE=emulate:nvidia-mma-sync "$CLF" train $RUN --device opencl --out "$W/h" --log "$W/h.jsonl" --precision bf16 2>&1 >/dev/null); rc=$?
  set -- $(cmp_losses "$W/bf16.jsonl" "$W/h.jsonl")
  [ $rc -eq 0 ] && printf '%s\n' "$msg" | grep -q "^precision bf16: GEMMs on .*tensor cores (emulated) .*every product's operands converted once" \
    && [ "$1" -eq 12 ] && awk "BEGIN { exit !($3 <= 1e-4) }" \
    && ok "opencl bf16 on the emulated GEMM on half operands: 12 steps within 1e-4 of the bf16 run (worst $3)" \
    || bad "opencl bf16 emulated half-operand GEMM: rc $rc, steps $1, worst $3: $msg"
fi

# the CPU backend's bf16 (where the CPU has AVX512-BF16) rounds the same products the same way
msg=$("$CLF" train $RUN --device cpu --out "$W/cb" --log "$W/cb.jsonl" --precision bf16 2>&1 >/dev/null)
if printf '%s\n' "$msg" | grep -q "GEMM inputs rounded to bf16"; then
  "$CLF" train $RUN --device cpu --out "$W/cf" --log "$W/cf.jsonl" --quiet >/dev/null 2>&1
  set -- $(cmp_losses "$W/cb.jsonl" "$W/bf16.jsonl"); near=$3
  set -- $(cmp_losses "$W/cf.jsonl" "$W/cb.jsonl"); far=$3
  awk "BEGIN { exit !($near <= 2e-3 && $near < $far / 4) }" \
    && ok "opencl bf16 follows the CPU backend's bf16 (worst $near) far closer than CPU fp32 does ($far)" \
    || bad "opencl bf16 vs CPU bf16: worst $near; CPU fp32 vs bf16: $far"
else
  echo "(no AVX512-BF16 here: the CPU backend's bf16 comparison is not made)"
fi

msg=$("$CLF" train $RUN --steps 8 --device opencl --resume "$W/a/step_000006.safetensors" --out "$W/r" --log "$W/r.jsonl" precision=bf16 2>&1 >/dev/null); rc=$?
[ $rc -eq 0 ] && printf '%s\n' "$msg" | grep -q 'resume: precision changed from "fp32" to "bf16"' \
  && [ "$(grep -o '"step": *[0-9]*' "$W/r.jsonl" | tr -d ' ' | tr '\n' ' ')" = '"step":7 "step":8 ' ] \
  && ok "opencl: fp32 checkpoint resumed under bf16 with a note, steps 7-8" \
  || bad "opencl resume under bf16: rc $rc: $msg $(cat "$W/r.jsonl" 2>/dev/null)"
# CF_MATRIX_ENGINE: an unknown name is one warning naming the engines, and the run goes on
msg=$(CF_MATRIX_ENGINE=bogus "$CLF" train $RUN --steps 2 --device opencl --out "$W/m" --precision bf16 2>&1 >/dev/null); rc=$?
[ $rc -eq 0 ] && [ "$(printf '%s\n' "$msg" | grep -c "matrix engine 'bogus' (CF_MATRIX_ENGINE) unknown: nvidia-mma-sync, nvidia-mma-sync-packed-tiles or off (emulate:<name> for an emulation); none used")" -eq 1 ] \
  && ok "CF_MATRIX_ENGINE=bogus: one warning, the run goes on" || bad "CF_MATRIX_ENGINE=bogus: rc $rc: $msg"
[ $fail -eq 0 ] && echo "PASS cli_precision_half_cl" || echo "FAIL cli_precision_half_cl"
exit $fail
