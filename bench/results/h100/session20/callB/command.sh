#!/bin/bash
# Session 20, second device call: gemm_half.cl's 128 x 64 blocks (CF_GEMM_HALF_BLOCK=64x32: groups
# of 4 warps, up to four groups a multiprocessor, each with its own barrier) with the default
# two-copy staging through registers, and with three cp.async copies (a copy of the kernels with
# GH_ASYNC 1, GH_ASYNC_STAGES 3: 36 KiB), against the default 128 x 128: hardware correctness, the
# 124M step's GEMMs, 124M bf16 end to end with the compiler's report (CF_GEMM_FAST_VERBOSE=1).
#   bash .device/setup.sh && bash bench/results/gpu/session20/callB.sh
set -u
O=/tmp/o20b; rm -rf $O; mkdir -p $O; save() { tar czf $OUT/results_b.tgz -C $O . 2>/dev/null; }; trap save EXIT; exec > >(tee -a $OUT/log_b.txt) 2>&1
t0=$(date +%s); el() { echo "[t+$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu -j16 --target clformer test_cl_gemm_fast test_cl_gemm_half >/dev/null 2>>$O/err.txt
[ -x build-gpu/clformer ] && [ -x build-gpu/test_cl_gemm_half ] || { echo "BUILD FAILED"; tail -30 $O/err.txt; exit 1; }
el built
export CF_TEST_OPENCL_DEVICE=nvidia CF_REQUIRE_OPENCL=1 CF_CACHE_DIR=$O/cache
rm -rf /tmp/ka3 && cp -r cl_kernels /tmp/ka3 && sed -i 's|^#define GH_ASYNC 0$|#define GH_ASYNC 1|; s|^#define GH_ASYNC_STAGES 2$|#define GH_ASYNC_STAGES 3|' /tmp/ka3/gemm_half.cl
grep -n "^#define GH_ASYNC" /tmp/ka3/gemm_half.cl | tr '\n' ' '; echo
j() { python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('%.0f tok/s, loss %.5f, peak %.0f MiB' % (d['tokens_per_s'], d['final_loss'], d['peak_device_bytes']/1048576))" $1 2>/dev/null || tail -3 $1; }
run() { # name block kerneldir
  local n=$1 b=$2 kd=$3
  CF_KERNEL_DIR=$kd CF_GEMM_HALF_BLOCK=$b timeout 100 ./build-gpu/test_cl_gemm_half --prec bf16 > $O/t_$n.txt 2>&1; echo "test $n: $(grep -E '^precision' $O/t_$n.txt | cut -c1-80) | $(tail -1 $O/t_$n.txt)"
  CF_KERNEL_DIR=$kd CF_GEMM_HALF_BLOCK=$b timeout 100 ./build-gpu/test_cl_gemm_fast --bench --shapes 124m --prec bf16 --variant 12 --min-time 0.01 > $O/gb_$n.txt 2>&1; echo "   $(grep -E 'GEMMs of one' $O/gb_$n.txt | cut -c1-110)"
  echo "   $(grep -E '^[a-z_.]+ +[01] +[01] |^square' $O/gb_$n.txt | awk '{printf "%s %s  ", $1, $9}')"
  CF_KERNEL_DIR=$kd CF_GEMM_HALF_BLOCK=$b CF_GEMM_FAST_VERBOSE=1 timeout 70 ./build-gpu/clformer bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 5 --warmup 2 --json > $O/b124_$n.txt 2>&1; echo "   124m bf16 $n: $(j $O/b124_$n.txt)"
  echo "   $(grep -A2 "entry function 'gh_gemm'" $O/b124_$n.txt | grep -E 'Used|spill' | head -2 | sed 's/.*ptxas//' | tr '\n' ' ' | cut -c1-300)"
  save
}
run base 128x32 ""
run b64 64x32 ""
run b64a3 64x32 /tmp/ka3
el variants
# the cross-entropy's blocked two-read form against the three-read one before it (a copy of the
# kernels with bench/results/gpu/session20/crossentropy_before.cl): the loss's time in profiles,
# and tokens/s, fp32 and bf16
rm -rf /tmp/kce && cp -r cl_kernels /tmp/kce && cp bench/results/gpu/session20/crossentropy_before.cl /tmp/kce/crossentropy.cl
for p in bf16 fp32; do for v in new old; do kd=; [ $v = old ] && kd=/tmp/kce
  CF_KERNEL_DIR=$kd timeout 60 ./build-gpu/clformer bench configs/gpt2_124m.json --device nvidia --precision $p --steps 2 --warmup 1 --profile > $O/prof_${p}_$v.txt 2>&1; echo "profile $p $v: $(grep -E '^(loss|total) ' $O/prof_${p}_$v.txt | tr -s ' ' | tr '\n' ' ')"
done; done
for v in new old; do kd=; [ $v = old ] && kd=/tmp/kce; CF_KERNEL_DIR=$kd timeout 70 ./build-gpu/clformer bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 5 --warmup 2 --json > $O/ce_$v.txt 2>&1; echo "124m bf16 ce $v: $(j $O/ce_$v.txt)"; done
el ce; save
# On an H200 (never measured against PyTorch there): 124M in fp32, tf32 and bf16 against PyTorch
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  for p in fp32 tf32 bf16; do timeout 70 ./build-gpu/clformer bench configs/gpt2_124m.json --device nvidia --precision $p --steps 5 --warmup 2 --json > $O/c124_$p.txt 2>&1; echo "124m $p clformer: $(j $O/c124_$p.txt)"; done
  timeout 90 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 --json > $O/torch124_fp32.txt 2>&1; echo "pytorch 124m fp32: $(tail -1 $O/torch124_fp32.txt | cut -c1-120)"
  timeout 90 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 --tf32 --json > $O/torch124_tf32.txt 2>&1; echo "pytorch 124m tf32: $(tail -1 $O/torch124_tf32.txt | cut -c1-120)"
  timeout 90 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 --amp bf16 --json > $O/torch124_bf16.txt 2>&1; echo "pytorch 124m bf16 autocast: $(tail -1 $O/torch124_bf16.txt | cut -c1-120)"
fi
el done
