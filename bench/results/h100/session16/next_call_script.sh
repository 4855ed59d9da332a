#!/bin/bash
# For the next session with device time (written in session 16, not run: no device machine could
# be started). The GEMM on half operands (gemm_half.cl, CF_GEMM_HALF): its hardware tests in the
# register-staged form (the kernel file as committed), with cp.async staging (a copy of the kernels
# with GH_ASYNC 1, through CF_KERNEL_DIR) and, if the first fails, without ldmatrix (GH_LDSM 0);
# then GPT-2 124M in bf16 with CF_GEMM_HALF=0 and =1 in each form that passed, PyTorch bf16
# autocast on the same model, wiki_cache_optimized, the fp16 tests, a profile and the per-shape
# GEMM times. Ordered so that what matters most comes first (a call cut short still returns what
# ran). If the tests pass: set half_gemm_verified in cl_matrix.c's nvidia-mma-sync row (and
# GH_ASYNC's default to the faster form) where the timings show a gain.
# Run from the repository root: bash .device/setup.sh && bash bench/results/h100/session16/next_call_script.sh
set -u
O=/tmp/o; rm -rf $O; mkdir -p $O; trap 'tar czf $OUT/results.tgz -C $O . 2>/dev/null' EXIT; exec > >(tee -a $OUT/log.txt) 2>&1
t0=$(date +%s); el() { echo "[t+$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
rm -rf /tmp/ka && cp -r cl_kernels /tmp/ka && sed -i 's/^#define GH_ASYNC 0$/#define GH_ASYNC 1/' /tmp/ka/gemm_half.cl; grep -c "^#define GH_ASYNC 1" /tmp/ka/gemm_half.cl
rm -rf /tmp/kn && cp -r cl_kernels /tmp/kn && sed -i 's/^#define GH_LDSM 1$/#define GH_LDSM 0/' /tmp/kn/gemm_half.cl; grep -c "^#define GH_LDSM 0" /tmp/kn/gemm_half.cl
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu -j16 --target clformer test_cl_gemm_half test_cl_gemm_fast >/dev/null 2>>$O/err.txt
[ -x build-gpu/clformer ] && [ -x build-gpu/test_cl_gemm_half ] && [ -x build-gpu/test_cl_gemm_fast ] || { echo "BUILD FAILED"; tail -30 $O/err.txt; exit 1; }
el built
export CF_TEST_OPENCL_DEVICE=nvidia CF_REQUIRE_OPENCL=1
kdir() { case $1 in async) echo /tmp/ka;; nol) echo /tmp/kn;; *) echo "";; esac; }
OKV=""
tst() { CF_KERNEL_DIR=$(kdir $1) timeout 100 ./build-gpu/test_cl_gemm_half --prec $2 > $O/t_$1_$2.txt 2>&1; local rc=$?
  echo "test_cl_gemm_half ($1) --prec $2 rc=$rc: $(tail -1 $O/t_$1_$2.txt)"; grep -E "^FAIL" $O/t_$1_$2.txt | head -4; return $rc; }
for v in reg async; do tst $v bf16 && OKV="$OKV $v"; done
echo "$OKV" | grep -q reg || { tst nol bf16 && OKV="$OKV nol"; }
echo "forms that passed bf16:$OKV"; [ -z "$OKV" ] && exit 1
el tests
j() { python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('%.0f tok/s, loss %.5f, peak %.0f MiB' % (d['tokens_per_s'], d['final_loss'], d['peak_device_bytes']/1048576))" $1 2>/dev/null || tail -3 $1; }
run() { # name config precision steps warmup variant
  local h=1 kd=$(kdir $6); [ $6 = off ] && h=0
  CF_KERNEL_DIR=$kd CF_GEMM_HALF=$h timeout 60 ./build-gpu/clformer bench configs/$2.json --device nvidia --precision $3 --steps $4 --warmup $5 --json > $O/$1.txt 2>&1; echo "$2 $3 $6: $(j $O/$1.txt)"
}
B=$(echo $OKV | awk '{print $1}'); echo "$OKV" | grep -q async && B=async
for v in off $OKV; do run b124_${v}_1 gpt2_124m bf16 5 2 $v; done
timeout 100 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 --amp bf16 --json > $O/torch124_bf16.txt 2>&1; echo "pytorch 124m bf16 autocast: $(tail -1 $O/torch124_bf16.txt | cut -c1-300)"
el e2e124
for v in off $B; do run wco_${v}_1 wiki_cache_optimized bf16 20 5 $v; done
for v in $OKV; do tst $v fp16; done
el fp16tests
for v in off $B; do run b124_${v}_2 gpt2_124m bf16 5 2 $v; done
CF_KERNEL_DIR=$(kdir $B) CF_GEMM_HALF=1 timeout 60 ./build-gpu/clformer bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 2 --warmup 1 --profile > $O/prof_$B.txt 2>&1; sed -n 4,14p $O/prof_$B.txt
el prof
CF_KERNEL_DIR=$(kdir $B) CF_GEMM_HALF=1 timeout 100 ./build-gpu/test_cl_gemm_fast --bench --shapes 124m --prec bf16 --variant 12 --min-time 0.02 > $O/gb_$B.txt 2>&1; echo "== gemm bench 124m half ($B) rc=$?"; grep -E "^[a-z_]+\.(fwd|dinp|dw)|GEMMs of one|^shape" $O/gb_$B.txt | cut -c1-75
el gemmbench
for v in off $B; do run wco_${v}_2 wiki_cache_optimized bf16 20 5 $v; run b124fp16_$v gpt2_124m fp16 5 2 $v; done
el done
