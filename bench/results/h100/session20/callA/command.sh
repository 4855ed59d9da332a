#!/bin/bash
# Session 20, first device call: gemm_half.cl's wider blocks (CF_GEMM_HALF_BLOCK 192x32 and 256x16)
# against the default 128x32: hardware correctness (test_cl_gemm_half, bf16), the compiler's
# registers (CF_GEMM_FAST_VERBOSE=1), the 124M step's GEMMs (test_cl_gemm_fast --bench), then 124M
# bf16 end to end for each block and PyTorch bf16 autocast in the same call.
# Run from the repository root, carrying .device:
#   bash .device/setup.sh && bash bench/results/gpu/session20/callA.sh
set -u
O=/tmp/o20a; rm -rf $O; mkdir -p $O; save() { tar czf $OUT/results_a.tgz -C $O . 2>/dev/null; }; trap save EXIT; exec > >(tee -a $OUT/log_a.txt) 2>&1
t0=$(date +%s); el() { echo "[t+$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu -j16 --target clformer test_cl_gemm_fast test_cl_gemm_half >/dev/null 2>>$O/err.txt
[ -x build-gpu/clformer ] && [ -x build-gpu/test_cl_gemm_half ] || { echo "BUILD FAILED"; tail -30 $O/err.txt; exit 1; }
el built
export CF_TEST_OPENCL_DEVICE=nvidia CF_REQUIRE_OPENCL=1 CF_CACHE_DIR=$O/cache
j() { python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('%.0f tok/s, loss %.5f, peak %.0f MiB' % (d['tokens_per_s'], d['final_loss'], d['peak_device_bytes']/1048576))" $1 2>/dev/null || tail -3 $1; }
for b in 128x32 192x32 256x16; do
  CF_GEMM_HALF_BLOCK=$b timeout 100 ./build-gpu/test_cl_gemm_half --prec bf16 > $O/t_$b.txt 2>&1; echo "test $b: $(grep -E '^precision' $O/t_$b.txt) | $(tail -1 $O/t_$b.txt)"
  CF_GEMM_HALF_BLOCK=$b CF_GEMM_FAST_VERBOSE=1 CF_CACHE_DIR=off timeout 60 ./build-gpu/test_cl_gemm_half --prec bf16 --small > $O/v_$b.txt 2>&1; echo "   regs: $(grep -A2 "entry function 'gh_gemm'" $O/v_$b.txt | grep -E 'Used|spill' | head -2 | sed 's/.*ptxas//' | tr '\n' ' ' | cut -c1-300)"
  CF_GEMM_HALF_BLOCK=$b timeout 100 ./build-gpu/test_cl_gemm_fast --bench --shapes 124m --prec bf16 --variant 12 --min-time 0.01 > $O/gb_$b.txt 2>&1; echo "   $(grep -E 'GEMMs of one' $O/gb_$b.txt | cut -c1-110)"
  echo "   $(grep -E '^[a-z_.]+ +[01] +[01] |^square' $O/gb_$b.txt | awk '{printf "%s %s  ", $1, $9}')"
  save
done
el gemms
for b in 128x32 192x32 256x16 128x32; do CF_GEMM_HALF_BLOCK=$b timeout 70 ./build-gpu/clformer bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 5 --warmup 2 --json > $O/b124_$b.txt 2>&1; echo "124m bf16 $b: $(j $O/b124_$b.txt)"; cp $O/b124_$b.txt $O/b124_${b}_$(date +%s).txt; done
el e2e; save
timeout 90 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 --amp bf16 --json > $O/torch124_bf16.txt 2>&1; echo "pytorch 124m bf16 autocast: $(tail -1 $O/torch124_bf16.txt | cut -c1-150)"
el done
