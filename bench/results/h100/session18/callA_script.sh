#!/bin/bash
# Session 18, first call: session 17's next_call_script.sh with, at its end, profiles of the 124M step in
# fp32 and tf32 (where issue 13 and 14 lose time). The GEMM on half operands runs by default now (half_gemm_verified); this call
# sweeps its build variants through copies of the kernels (CF_KERNEL_DIR):
#   base   8 warps of 64 x 32, slices staged through registers (the default)
#   a2     cp.async staging in two copies (GH_ASYNC 1)
#   n128   4 warps of 64 x 64 (GH_NT 128)
#   n128a2 both
#   g4/g16 block-row groups of 4 / 16 (GH_GROUP_M)
# Per variant: its bf16 hardware test, the 124M step's GEMMs (test_cl_gemm_fast --bench) and GPT-2
# 124M bf16 end to end; then PyTorch bf16 autocast, fp32 and TF32 on the same model with
# clformer's fp32 and tf32 (issues 13 and 14's ratios, in the same call). Ordered so that a call
# cut short still returns what matters most.
# Run from the repository root: bash .device/setup.sh && bash bench/results/h100/session18/callA_script.sh
set -u
O=/tmp/o; rm -rf $O; mkdir -p $O; trap 'tar czf $OUT/results.tgz -C $O . 2>/dev/null' EXIT; exec > >(tee -a $OUT/log.txt) 2>&1
t0=$(date +%s); el() { echo "[t+$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mk() { rm -rf /tmp/k$1 && cp -r cl_kernels /tmp/k$1 && sed -i "$2" /tmp/k$1/gemm_half.cl; }
A='s/^#define GH_ASYNC 0$/#define GH_ASYNC 1/'; N='s/^#define GH_NT 256 /#define GH_NT 128 /'
mk a2 "$A"; mk n128 "$N"; mk n128a2 "$N;$A"
mk g4 's/^#define GH_GROUP_M 8 /#define GH_GROUP_M 4 /'; mk g16 's/^#define GH_GROUP_M 8 /#define GH_GROUP_M 16 /'
for v in a2 n128 n128a2 g4 g16; do echo "$v: $(diff cl_kernels/gemm_half.cl /tmp/k$v/gemm_half.cl | grep -c '^>') lines changed"; done
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu -j16 --target clformer test_cl_gemm_half test_cl_gemm_fast >/dev/null 2>>$O/err.txt
[ -x build-gpu/clformer ] && [ -x build-gpu/test_cl_gemm_half ] && [ -x build-gpu/test_cl_gemm_fast ] || { echo "BUILD FAILED"; tail -30 $O/err.txt; exit 1; }
el built
export CF_TEST_OPENCL_DEVICE=nvidia CF_REQUIRE_OPENCL=1
j() { python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('%.0f tok/s, loss %.5f, peak %.0f MiB' % (d['tokens_per_s'], d['final_loss'], d['peak_device_bytes']/1048576))" $1 2>/dev/null || tail -3 $1; }
kd() { [ $1 = base ] && echo "" || echo /tmp/k$1; }
b124() { CF_KERNEL_DIR=$(kd $1) timeout 50 ./build-gpu/clformer bench configs/gpt2_124m.json --device nvidia --precision $2 --steps 5 --warmup 2 --json > $O/b124_$1_$2_$3.txt 2>&1; echo "124m $2 $1: $(j $O/b124_$1_$2_$3.txt)"; }
for v in base n128 a2 n128a2 g4 g16; do
  CF_KERNEL_DIR=$(kd $v) timeout 60 ./build-gpu/test_cl_gemm_half --prec bf16 > $O/t_$v.txt 2>&1; rc=$?; echo "== $v test rc=$rc: $(tail -1 $O/t_$v.txt)"; grep -E "^FAIL|^error" $O/t_$v.txt | head -3
  [ $rc = 0 ] || continue
  CF_KERNEL_DIR=$(kd $v) timeout 60 ./build-gpu/test_cl_gemm_fast --bench --shapes 124m --prec bf16 --variant 12 --min-time 0.02 > $O/gb_$v.txt 2>&1; grep -E "GEMMs of one" $O/gb_$v.txt | cut -c1-90
  b124 $v bf16 1
  el $v
done
timeout 90 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 --amp bf16 --json > $O/torch124_bf16.txt 2>&1; echo "pytorch 124m bf16 autocast: $(tail -1 $O/torch124_bf16.txt | cut -c1-100)"
b124 base bf16 2
CF_GEMM_HALF=0 timeout 50 ./build-gpu/clformer bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 5 --warmup 2 --json > $O/b124_off.txt 2>&1; echo "124m bf16 CF_GEMM_HALF=0: $(j $O/b124_off.txt)"
el bf16
for p in fp32 tf32; do b124 base $p 1; done
timeout 90 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 --json > $O/torch124_fp32.txt 2>&1; echo "pytorch 124m fp32: $(tail -1 $O/torch124_fp32.txt | cut -c1-100)"
timeout 90 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 --tf32 --json > $O/torch124_tf32.txt 2>&1; echo "pytorch 124m tf32: $(tail -1 $O/torch124_tf32.txt | cut -c1-100)"
el done
for p in fp32 tf32 bf16; do timeout 60 ./build-gpu/clformer bench configs/gpt2_124m.json --device nvidia --precision $p --steps 2 --warmup 1 --profile > $O/prof_$p.txt 2>&1; echo "== profile $p"; sed -n 2,14p $O/prof_$p.txt; done
el profiles
