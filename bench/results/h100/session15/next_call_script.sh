#!/bin/bash
# For the next session with device time (written in session 15, not run): (1) the refined bf16 /
# fp16 rule (64x64 packed bk-32 blocks for NT products and NN products with few 128x128 blocks)
# against the same tree with that branch off, alternated, on the three models; (2) the register
# cap experiment: the tensor-core GEMM built with -cl-nv-maxrregcount (the patch
# maxrreg_experiment.patch, applied to a copy) so that two groups of 8 warps fit a multiprocessor.
# Run from the repository root: bash .device/setup.sh && bash bench/results/h100/session15/next_call_script.sh
set -u
O=/tmp/o; rm -rf $O; mkdir -p $O; trap 'tar czf $OUT/results.tgz -C $O . 2>/dev/null' EXIT; exec > >(tee -a $OUT/log.txt) 2>&1
t0=$(date +%s); el() { echo "[t+$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
copy() { rm -rf $1 && mkdir -p $1 && tar cf - --exclude='./build*' --exclude=./.device --exclude=./.gpu --exclude=./.git --exclude=./bench/results . | tar xf - -C $1; }
copy /tmp/base; copy /tmp/xopt
sed -i 's/    if (tb || blocks128 < 2ll \* compute_units) \*out = packed;/    if (0) *out = packed;/' /tmp/base/src/backend/opencl/cl_gemm_fast.c
grep -c "    if (0) \*out = packed;" /tmp/base/src/backend/opencl/cl_gemm_fast.c
(cd /tmp/xopt && patch -p1 < "$OLDPWD/bench/results/h100/session15/maxrreg_experiment.patch")
# (one after another: a bare `wait` would also wait for the tee of the process substitution
# above, which never ends; session 16's first call hung there for its whole 600 s)
for d in . /tmp/base /tmp/xopt; do
  cmake -S $d -B $d/build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build $d/build-gpu -j16 --target clformer test_cl_gemm_fast >/dev/null 2>>$O/err.txt
done
for d in . /tmp/base /tmp/xopt; do [ -x $d/build-gpu/clformer ] || { echo "BUILD FAILED in $d"; tail -20 $O/err.txt; exit 1; }; done
el built
j() { python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('%.0f tok/s, loss %.5f, peak %.0f MiB' % (d['tokens_per_s'], d['final_loss'], d['peak_device_bytes']/1048576))" $1 2>/dev/null || tail -3 $1; }
for c in wiki_cache_optimized wiki_llama; do for r in 1 2; do for b in base new; do
  C=./build-gpu/clformer; [ $b = base ] && C=/tmp/base/build-gpu/clformer
  timeout 60 $C bench configs/$c.json --device nvidia --precision bf16 --steps 20 --warmup 5 --json > $O/${c}_${b}_$r.txt 2>&1; echo "$c bf16 $b r$r: $(j $O/${c}_${b}_$r.txt)"
done; done; done
for r in 1 2; do for b in base new; do C=./build-gpu/clformer; [ $b = base ] && C=/tmp/base/build-gpu/clformer
  timeout 60 $C bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 5 --warmup 2 --json > $O/b124_${b}_$r.txt 2>&1; echo "124m bf16 $b r$r: $(j $O/b124_${b}_$r.txt)"
done; done
el rule
export CF_TEST_OPENCL_DEVICE=nvidia CF_REQUIRE_OPENCL=1
for x in "" "-cl-nv-maxrregcount=128"; do
  n=$(echo "$x" | tr -dc '0-9'); n=${n:-none}
  for v in 0 1 12; do
    CF_CACHE_DIR=off CF_XOPT_GEMM="$x" CF_GEMM_FAST_VERBOSE=1 timeout 120 /tmp/xopt/build-gpu/test_cl_gemm_fast --bench --shapes 124m --prec bf16 --variant $v --min-time 0.03 > $O/gb_v${v}_r$n.txt 2>&1
    echo "== variant $v maxrreg $n rc=$?: $(grep -E 'GEMMs of one' $O/gb_v${v}_r$n.txt)"; grep -E "registers|spill" $O/gb_v${v}_r$n.txt | sed 's/^.*ptxas/ptxas/' | sort | uniq -c | head -6
  done
done
for r in 1 2; do for x in "" "-cl-nv-maxrregcount=128"; do
  n=$(echo "$x" | tr -dc '0-9'); n=${n:-none}
  CF_XOPT_GEMM="$x" timeout 90 /tmp/xopt/build-gpu/clformer bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 5 --warmup 2 --json > $O/b124_r${n}_$r.txt 2>&1; echo "124m bf16 maxrreg $n r$r: $(j $O/b124_r${n}_$r.txt)"
done; done
el done
