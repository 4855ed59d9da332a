#!/bin/bash
# Written in session 19: the second of the next device calls (after next_call_script.sh).
# Session 19 ran next_call_script.sh (bench/results/h100/session19/callA), then (1) below and
# PyTorch's bf16 and tf32 on the H100 (callB, callC); (2) in fp32 and on an H200, and (3), remain.
#   (1) GH_DIAG builds that leave parts out of gh_gemm's loop (where its time goes: gemm_half.cl);
#   (2) 124M in fp32, tf32 and bf16 against PyTorch on this card (the H200 has never run issue
#       13's comparison);
#   (3) session 18's next_call_script.sh (gh_gemm's registers capped by -cl-nv-maxrregcount).
# Run from the repository root, carrying .device:
#   bash .device/setup.sh && bash bench/results/gpu/session19/next_call_script_b.sh
set -u
O=/tmp/o19b; rm -rf $O; mkdir -p $O; save() { tar czf $OUT/results_b.tgz -C $O . 2>/dev/null; }; trap save EXIT; exec > >(tee -a $OUT/log_b.txt) 2>&1
t0=$(date +%s); el() { echo "[t+$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu -j16 --target clformer test_cl_gemm_fast >/dev/null 2>>$O/err.txt
[ -x build-gpu/clformer ] && [ -x build-gpu/test_cl_gemm_fast ] || { echo "BUILD FAILED"; tail -30 $O/err.txt; exit 1; }
el built
export CF_TEST_OPENCL_DEVICE=nvidia CF_REQUIRE_OPENCL=1 CF_CACHE_DIR=off
j() { python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('%.0f tok/s, loss %.5f, peak %.0f MiB' % (d['tokens_per_s'], d['final_loss'], d['peak_device_bytes']/1048576))" $1 2>/dev/null || tail -3 $1; }
# (1) where gh_gemm's loop spends its time (GH_DIAG measurement builds, wrong products: 1 no global
# loads or staging in the loop, 2 also no barrier, 3 also no ldmatrix; the pack passes are timed
# in every column alike)
for d in 1 2 3; do rm -rf /tmp/kd$d && cp -r cl_kernels /tmp/kd$d && sed -i "s|^#define GH_DIAG 0 /\*|#define GH_DIAG $d /*|" /tmp/kd$d/gemm_half.cl
  CF_KERNEL_DIR=/tmp/kd$d timeout 90 ./build-gpu/test_cl_gemm_fast --bench --shapes 124m --prec bf16 --variant 12 --min-time 0.01 > $O/gb_diag$d.txt 2>&1; echo "   diag $d: $(grep -E 'GEMMs of one' $O/gb_diag$d.txt | cut -c1-100)"
done
CF_KERNEL_DIR= timeout 90 ./build-gpu/test_cl_gemm_fast --bench --shapes 124m --prec bf16 --variant 12 --min-time 0.01 > $O/gb_base.txt 2>&1; echo "   base: $(grep -E 'GEMMs of one' $O/gb_base.txt | cut -c1-100)"
for f in base diag1 diag2 diag3; do echo "$f: $(grep -E '^[a-z_.]+ +[01] +[01] ' $O/gb_$f.txt | awk '{printf "%s %s  ", $1, $9}')"; done
el gemm_half; save
# (2) against PyTorch on this card
for p in fp32 tf32 bf16; do timeout 60 ./build-gpu/clformer bench configs/gpt2_124m.json --device nvidia --precision $p --steps 5 --warmup 2 --json > $O/b124_$p.txt 2>&1; echo "124m $p clformer: $(j $O/b124_$p.txt)"; done
timeout 90 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 --json > $O/torch124_fp32.txt 2>&1; echo "pytorch 124m fp32: $(tail -1 $O/torch124_fp32.txt | cut -c1-150)"
timeout 90 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 --tf32 --json > $O/torch124_tf32.txt 2>&1; echo "pytorch 124m tf32: $(tail -1 $O/torch124_tf32.txt | cut -c1-150)"
timeout 90 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 --amp bf16 --json > $O/torch124_bf16.txt 2>&1; echo "pytorch 124m bf16 autocast: $(tail -1 $O/torch124_bf16.txt | cut -c1-150)"
el torch; save
# (3) session 18's plan
mkdir -p $OUT/s18 && OUT=$OUT/s18 timeout 110 bash bench/results/h100/session18/next_call_script.sh > /dev/null 2>&1; tail -25 $OUT/s18/log.txt
el done
