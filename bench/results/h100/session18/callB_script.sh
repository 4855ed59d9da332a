#!/bin/bash
# Session 18, second call: the half-operand GEMM with 16-deep K slices (GH_BK 16: 16 KiB a copy of
# both tiles), so that cp.async can keep 3 to 5 copies in flight within NVIDIA's 48 KiB of local
# memory (session 18's first call: two copies lose 17% against the register staging). Per variant
# (a copy of cl_kernels/ with its defines changed, through CF_KERNEL_DIR): the bf16 hardware test,
# the 124M step's GEMMs, GPT-2 124M bf16 end to end.
# Run from the repository root: bash .device/setup.sh && bash bench/results/h100/session18/callB_script.sh
set -u
O=/tmp/o; rm -rf $O; mkdir -p $O; trap 'tar czf $OUT/results.tgz -C $O . 2>/dev/null' EXIT; exec > >(tee -a $OUT/log.txt) 2>&1
t0=$(date +%s); el() { echo "[t+$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mk() { rm -rf /tmp/k$1 && cp -r cl_kernels /tmp/k$1 && sed -i "$2" /tmp/k$1/gemm_half.cl; }
B='s/^#define GH_BK 32 /#define GH_BK 16 /'; A='s/^#define GH_ASYNC 0$/#define GH_ASYNC 1/'; N='s/^#define GH_NT 256 /#define GH_NT 128 /'
S() { echo "s/^#define GH_ASYNC_STAGES 2$/#define GH_ASYNC_STAGES $1/"; }
mk b16 "$B"; mk b16a3 "$B;$A;$(S 3)"; mk b16a4 "$B;$A;$(S 4)"; mk b16a5 "$B;$A;$(S 5)"
mk b16n128a4 "$B;$A;$N;$(S 4)"; mk b16n128 "$B;$N"; mk n128a2 "$A;$N"
for v in b16 b16a3 b16a4 b16a5 b16n128a4 b16n128 n128a2; do echo "$v: $(diff cl_kernels/gemm_half.cl /tmp/k$v/gemm_half.cl | grep -c '^>') lines changed"; done
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu -j16 --target clformer test_cl_gemm_half test_cl_gemm_fast >/dev/null 2>>$O/err.txt
[ -x build-gpu/clformer ] && [ -x build-gpu/test_cl_gemm_half ] && [ -x build-gpu/test_cl_gemm_fast ] || { echo "BUILD FAILED"; tail -30 $O/err.txt; exit 1; }
el built
export CF_TEST_OPENCL_DEVICE=nvidia CF_REQUIRE_OPENCL=1
j() { python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('%.0f tok/s, loss %.5f, peak %.0f MiB' % (d['tokens_per_s'], d['final_loss'], d['peak_device_bytes']/1048576))" $1 2>/dev/null || tail -3 $1; }
kd() { [ $1 = base ] && echo "" || echo /tmp/k$1; }
b124() { CF_KERNEL_DIR=$(kd $1) timeout 50 ./build-gpu/clformer bench configs/gpt2_124m.json --device nvidia --precision $2 --steps 5 --warmup 2 --json > $O/b124_$1_$2_$3.txt 2>&1; echo "124m $2 $1: $(j $O/b124_$1_$2_$3.txt)"; }
for v in base b16 b16a3 b16a4 b16a5 b16n128a4 b16n128 n128a2; do
  CF_KERNEL_DIR=$(kd $v) timeout 60 ./build-gpu/test_cl_gemm_half --prec bf16 > $O/t_$v.txt 2>&1; rc=$?; echo "== $v test rc=$rc: $(tail -1 $O/t_$v.txt)"; grep -E "^FAIL|^error|unsupported" $O/t_$v.txt | head -3
  [ $rc = 0 ] || continue
  CF_KERNEL_DIR=$(kd $v) timeout 60 ./build-gpu/test_cl_gemm_fast --bench --shapes 124m --prec bf16 --variant 12 --min-time 0.02 > $O/gb_$v.txt 2>&1; grep -E "GEMMs of one|^square" $O/gb_$v.txt | cut -c1-90
  b124 $v bf16 1
  el $v
done
b124 base bf16 2
el done
