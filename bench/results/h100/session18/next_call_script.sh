#!/bin/bash
# For the next session with device time (written in session 18). Session 18's third call asked
# NVIDIA's compiler to cap gh_gemm's registers with "-cl-nv-maxrregcount=168" and the report still
# said 226 for GH_NT 128 (its 64 x 64 warp tiles do twice the work a warp of the default's, at
# two groups of 4 warps a multiprocessor). NVIDIA's extension text writes the option both as
# "-cl-nv-maxrregcount=<N>" and "-cl-nv-maxrregcount <N>". This call:
#   (1) checks which form takes effect (the verbose report's registers and spills), on the default
#       kernel capped at 96 (it must then spill or report 96) and on GH_NT 128 capped at 168;
#   (2) times GH_NT 128 at 168 (three groups of 4 warps) and 128 (four) where a form took effect;
#   (3) GPT-2 124M in fp32 and bf16 against PyTorch on whichever card this is (the H200 has never
#       run issue 13's comparison).
# maxrreg_half.patch (an experiment, not in the code) adds CF_XOPT_HALF to gh_gemm's build options
# in a copy of the tree.
# Run from the repository root: bash .device/setup.sh && bash bench/results/h100/session18/next_call_script.sh
set -u
O=/tmp/o; rm -rf $O; mkdir -p $O; trap 'tar czf $OUT/results.tgz -C $O . 2>/dev/null' EXIT; exec > >(tee -a $OUT/log.txt) 2>&1
t0=$(date +%s); el() { echo "[t+$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
rm -rf /tmp/kn128 && cp -r cl_kernels /tmp/kn128 && sed -i 's/^#define GH_NT 256 /#define GH_NT 128 /' /tmp/kn128/gemm_half.cl
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu -j16 --target clformer >/dev/null 2>>$O/err.txt
rm -rf /tmp/xo && mkdir /tmp/xo && tar cf - --exclude=./build-gpu --exclude=./.device . | tar xf - -C /tmp/xo
(cd /tmp/xo && patch -p1 < bench/results/h100/session18/maxrreg_half.patch) > $O/patch.txt 2>&1 && echo "xopt patch applied" || echo "PATCH FAILED"
cmake -S /tmp/xo -B /tmp/xo/b -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build /tmp/xo/b -j16 --target clformer test_cl_gemm_half test_cl_gemm_fast >/dev/null 2>>$O/err.txt
[ -x build-gpu/clformer ] && [ -x /tmp/xo/b/test_cl_gemm_fast ] || { echo "BUILD FAILED"; tail -30 $O/err.txt; exit 1; }
el built
export CF_TEST_OPENCL_DEVICE=nvidia CF_REQUIRE_OPENCL=1 CF_CACHE_DIR=off
j() { python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('%.0f tok/s, loss %.5f, peak %.0f MiB' % (d['tokens_per_s'], d['final_loss'], d['peak_device_bytes']/1048576))" $1 2>/dev/null || tail -3 $1; }
kd() { [ $1 = base ] && echo "" || echo /tmp/k$1; }
regs() { grep -E "gemm_half.*(registers|spill)" $1 | sed 's/^.*ptxas/ptxas/' | sort | uniq -c | head -4; }
# (1) which spelling caps the registers
for x in "base|-cl-nv-maxrregcount=96" "base|-cl-nv-maxrregcount 96" "n128|-cl-nv-maxrregcount 168"; do v=${x%%|*}; o=${x#*|}; f=$O/cap_${v}_$(echo "$o" | tr -c 'a-z0-9' '_').txt
  CF_XOPT_HALF="$o" CF_KERNEL_DIR=$(kd $v) CF_GEMM_FAST_VERBOSE=1 timeout 90 /tmp/xo/b/test_cl_gemm_fast --bench --shapes 124m --prec bf16 --variant 12 --min-time 0.01 > $f 2>&1
  echo "== $v '$o' rc=$?: $(grep -E 'GEMMs of one' $f | cut -c1-80)"; regs $f
done
el caps
# (2) GH_NT 128 at three and four groups a multiprocessor, checked and timed end to end
for n in 168 128; do o="-cl-nv-maxrregcount $n"
  CF_XOPT_HALF="$o" CF_KERNEL_DIR=/tmp/kn128 timeout 60 /tmp/xo/b/test_cl_gemm_half --prec bf16 > $O/t_n128_$n.txt 2>&1; echo "== n128 cap $n test rc=$?: $(tail -1 $O/t_n128_$n.txt)"
  CF_XOPT_HALF="$o" CF_KERNEL_DIR=/tmp/kn128 timeout 60 /tmp/xo/b/clformer bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 5 --warmup 2 --json > $O/b124_n128_$n.txt 2>&1; echo "124m bf16 n128 cap $n: $(j $O/b124_n128_$n.txt)"
done
timeout 60 ./build-gpu/clformer bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 5 --warmup 2 --json > $O/b124_base_bf16.txt 2>&1; echo "124m bf16 default: $(j $O/b124_base_bf16.txt)"
el n128
# (3) issue 13 and 14's ratios on this card
timeout 60 ./build-gpu/clformer bench configs/gpt2_124m.json --device nvidia --precision fp32 --steps 5 --warmup 2 --json > $O/b124_fp32.txt 2>&1; echo "124m fp32 clformer: $(j $O/b124_fp32.txt)"
timeout 90 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 --json > $O/torch124_fp32.txt 2>&1; echo "pytorch 124m fp32: $(tail -1 $O/torch124_fp32.txt | cut -c1-120)"
timeout 90 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 --amp bf16 --json > $O/torch124_bf16.txt 2>&1; echo "pytorch 124m bf16 autocast: $(tail -1 $O/torch124_bf16.txt | cut -c1-120)"
el done
