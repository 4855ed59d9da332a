#!/bin/bash
# Session 18, third call. (1) The fused cross-entropy reading a long row twice instead of three
# times (one online pass for the max and the sum): its test on the GPU, then GPT-2 124M bf16 with
# the previous crossentropy.cl (.gpu/crossentropy_before.cl, carried) and the new one,
# and a profile of each. (2) gh_gemm's registers as NVIDIA's compiler reports them
# (CF_GEMM_FAST_VERBOSE=1), default and GH_NT 128. (3) The same with -cl-nv-maxrregcount (the
# build option added by maxrreg_half.patch, an experiment applied to a copy of the tree here).
# Run from the repository root with .device and .gpu carried:
#   bash .device/setup.sh && bash bench/results/h100/session18/callC_script.sh
set -u
O=/tmp/o; rm -rf $O; mkdir -p $O; trap 'tar czf $OUT/results.tgz -C $O . 2>/dev/null' EXIT; exec > >(tee -a $OUT/log.txt) 2>&1
t0=$(date +%s); el() { echo "[t+$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
rm -rf /tmp/kce0 /tmp/kn128 && cp -r cl_kernels /tmp/kce0 && cp .gpu/crossentropy_before.cl /tmp/kce0/crossentropy.cl
cp -r cl_kernels /tmp/kn128 && sed -i 's/^#define GH_NT 256 /#define GH_NT 128 /' /tmp/kn128/gemm_half.cl
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu -j16 --target clformer test_cl_gemm_fast test_cl_ops >/dev/null 2>>$O/err.txt
rm -rf /tmp/xo && mkdir /tmp/xo && tar cf - --exclude=./build-gpu --exclude=./.device . | tar xf - -C /tmp/xo
(cd /tmp/xo && patch -p1 < bench/results/h100/session18/maxrreg_half.patch) > $O/patch.txt 2>&1 && echo "xopt patch applied" || echo "PATCH FAILED"
cmake -S /tmp/xo -B /tmp/xo/b -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build /tmp/xo/b -j16 --target clformer test_cl_gemm_fast >/dev/null 2>>$O/err.txt
[ -x build-gpu/clformer ] && [ -x build-gpu/test_cl_ops ] && [ -x /tmp/xo/b/test_cl_gemm_fast ] || { echo "BUILD FAILED"; tail -30 $O/err.txt; exit 1; }
el built
export CF_TEST_OPENCL_DEVICE=nvidia CF_REQUIRE_OPENCL=1
timeout 60 ./build-gpu/test_cl_ops --only crossentropy > $O/t_ce.txt 2>&1; echo "== test_cl_ops crossentropy rc=$?: $(tail -1 $O/t_ce.txt)"; grep "^FAIL" $O/t_ce.txt | head
j() { python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('%.0f tok/s, loss %.5f, peak %.0f MiB' % (d['tokens_per_s'], d['final_loss'], d['peak_device_bytes']/1048576))" $1 2>/dev/null || tail -3 $1; }
kd() { case $1 in new) echo "";; old) echo /tmp/kce0;; n128) echo /tmp/kn128;; esac; }
for r in 1; do for k in old new; do
  CF_KERNEL_DIR=$(kd $k) timeout 50 ./build-gpu/clformer bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 5 --warmup 2 --json > $O/b124_ce${k}_$r.txt 2>&1; echo "124m bf16 crossentropy $k r$r: $(j $O/b124_ce${k}_$r.txt)"
done; done
for k in old new; do CF_KERNEL_DIR=$(kd $k) timeout 60 ./build-gpu/clformer bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 2 --warmup 1 --profile > $O/prof_ce$k.txt 2>&1; echo "profile crossentropy $k: $(grep -E '^(loss|total) ' $O/prof_ce$k.txt | tr -s ' ' | tr '\n' ';')"; grep -E "crossentropy_fused" $O/prof_ce$k.txt | head -1; done
el ce
for v in new; do
  CF_KERNEL_DIR=$(kd $v) CF_CACHE_DIR=off CF_GEMM_FAST_VERBOSE=1 timeout 90 ./build-gpu/test_cl_gemm_fast --bench --shapes 124m --prec bf16 --variant 12 --min-time 0.01 > $O/reg_$v.txt 2>&1
  echo "== gh_gemm $v (default registers): $(grep -E 'GEMMs of one' $O/reg_$v.txt | cut -c1-80)"; grep -E "gemm_half.*(registers|spill)" $O/reg_$v.txt | sed 's/^.*ptxas/ptxas/' | sort | uniq -c | head -8
done
el regs
for vn in new:128; do v=${vn%:*}; n=${vn#*:}
  CF_XOPT_HALF="-cl-nv-maxrregcount=$n" CF_KERNEL_DIR=$(kd $v) CF_CACHE_DIR=off CF_GEMM_FAST_VERBOSE=1 timeout 90 /tmp/xo/b/test_cl_gemm_fast --bench --shapes 124m --prec bf16 --variant 12 --min-time 0.01 > $O/xr_${v}_$n.txt 2>&1
  echo "== gh_gemm $v maxrregcount $n: $(grep -E 'GEMMs of one' $O/xr_${v}_$n.txt | cut -c1-80)"; grep -E "^square" $O/xr_${v}_$n.txt | cut -c1-60; grep -E "gemm_half.*(registers|spill)" $O/xr_${v}_$n.txt | sed 's/^.*ptxas/ptxas/' | sort | uniq -c | head -6
  CF_XOPT_HALF="-cl-nv-maxrregcount=$n" CF_KERNEL_DIR=$(kd $v) CF_CACHE_DIR=off timeout 60 /tmp/xo/b/clformer bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 5 --warmup 2 --json > $O/b124_xr_${v}_$n.txt 2>&1; echo "124m bf16 $v maxrregcount $n: $(j $O/b124_xr_${v}_$n.txt)"
done
el done

# (4) issue 13's fp32 ratio on whichever card this is (the H200 has never run it)
timeout 60 ./build-gpu/clformer bench configs/gpt2_124m.json --device nvidia --precision fp32 --steps 5 --warmup 2 --json > $O/b124_fp32.txt 2>&1; echo "124m fp32 clformer: $(j $O/b124_fp32.txt)"
timeout 90 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 --json > $O/torch124_fp32.txt 2>&1; echo "pytorch 124m fp32: $(tail -1 $O/torch124_fp32.txt | cut -c1-120)"
el fp32

# (5) last, if time is left: GH_NT 128's registers, and with a cap of 168 (three groups of 4 warps)
for v in n128; do
  CF_KERNEL_DIR=$(kd $v) CF_CACHE_DIR=off CF_GEMM_FAST_VERBOSE=1 timeout 90 ./build-gpu/test_cl_gemm_fast --bench --shapes 124m --prec bf16 --variant 12 --min-time 0.01 > $O/reg_$v.txt 2>&1
  echo "== gh_gemm $v (default registers): $(grep -E 'GEMMs of one' $O/reg_$v.txt | cut -c1-80)"; grep -E "gemm_half.*(registers|spill)" $O/reg_$v.txt | sed 's/^.*ptxas/ptxas/' | sort | uniq -c | head -8
done
for vn in n128:168; do v=${vn%:*}; n=${vn#*:}
  CF_XOPT_HALF="-cl-nv-maxrregcount=$n" CF_KERNEL_DIR=$(kd $v) CF_CACHE_DIR=off CF_GEMM_FAST_VERBOSE=1 timeout 90 /tmp/xo/b/test_cl_gemm_fast --bench --shapes 124m --prec bf16 --variant 12 --min-time 0.01 > $O/xr_${v}_$n.txt 2>&1
  echo "== gh_gemm $v maxrregcount $n: $(grep -E 'GEMMs of one' $O/xr_${v}_$n.txt | cut -c1-80)"; grep -E "gemm_half.*(registers|spill)" $O/xr_${v}_$n.txt | sed 's/^.*ptxas/ptxas/' | sort | uniq -c | head -6
done
el n128
