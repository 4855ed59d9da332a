#!/bin/bash
# session 15: the packed bf16 / fp16 tiles' 64x64 blocks with 32-deep slices for NT products
# (cf_cl_gemm_fast_rule_form): hardware tests (bf16, fp16, tf32's refusals), GEMM bench at 124M and
# d 384 shapes, and training steps against the same tree with the rule's new branch switched off
set -u
O=/tmp/o; rm -rf $O; mkdir -p $O; trap 'tar czf $OUT/results.tgz -C $O . 2>/dev/null' EXIT; exec > >(tee -a $OUT/log.txt) 2>&1
t0=$(date +%s); el() { echo "[t+$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
rm -rf /tmp/base && mkdir -p /tmp/base && tar cf - --exclude='./build*' --exclude=./.device --exclude=./.gpu . | tar xf - -C /tmp/base
sed -i 's/    if (mma >= 2 \&\& !ta \&\& tb \&\& out->split == 1/    if (0 \&\& mma >= 2 \&\& !ta \&\& tb \&\& out->split == 1/' /tmp/base/src/backend/opencl/cl_gemm_fast.c
grep -c "if (0 && mma >= 2" /tmp/base/src/backend/opencl/cl_gemm_fast.c
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu -j16 >/dev/null 2>$O/err.txt
(cmake -S /tmp/base -B /tmp/base/build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build /tmp/base/build -j16 --target clformer >/dev/null 2>$O/err_base.txt)
[ -x build-gpu/clformer ] && [ -x /tmp/base/build/clformer ] || { echo BUILD FAILED; tail -20 $O/err.txt $O/err_base.txt; exit 1; }
el built
export CF_TEST_OPENCL_DEVICE=nvidia CF_REQUIRE_OPENCL=1
for p in "--prec bf16" "--prec fp16" "--tf32"; do
  n=$(echo $p | tr -d ' -'); timeout 200 ./build-gpu/test_cl_gemm_fast $p > $O/t_$n.txt 2>&1; echo "test_cl_gemm_fast $p rc=$?: $(tail -1 $O/t_$n.txt); bk32 ok lines: $(grep 'bk 32' $O/t_$n.txt | grep -c '^ok')"; grep -E "^FAIL" $O/t_$n.txt | head -3
done
el tests
for sh in 124m 384; do
  timeout 150 ./build-gpu/test_cl_gemm_fast --bench --shapes $sh --prec bf16 --variant 12 --min-time 0.03 > $O/gb_$sh.txt 2>&1; echo "== gemm bench $sh rc=$?"; grep -vE "^    all:" $O/gb_$sh.txt | grep -vE "^\(variant|^device|^ok|^precision" | cut -c1-170
done
el gemmbench
j() { python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('%.0f tok/s, loss %.5f, peak %.0f MiB' % (d['tokens_per_s'], d['final_loss'], d['peak_device_bytes']/1048576))" $1 2>/dev/null || tail -3 $1; }
for r in 1 2; do for b in base new; do
  C=./build-gpu/clformer; [ $b = base ] && C=/tmp/base/build/clformer
  timeout 60 $C bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 5 --warmup 2 --json > $O/b124_${b}_$r.txt 2>&1; echo "124m bf16 $b r$r: $(j $O/b124_${b}_$r.txt)"
done; done
for b in base new; do C=./build-gpu/clformer; [ $b = base ] && C=/tmp/base/build/clformer
  timeout 60 $C bench configs/gpt2_124m.json --device nvidia --precision fp16 --steps 5 --warmup 2 --json > $O/b124fp16_${b}.txt 2>&1; echo "124m fp16 $b: $(j $O/b124fp16_${b}.txt)"
done
for c in wiki_cache_optimized wiki_llama; do for r in 1 2; do for b in base new; do
  C=./build-gpu/clformer; [ $b = base ] && C=/tmp/base/build/clformer
  timeout 60 $C bench configs/$c.json --device nvidia --precision bf16 --steps 20 --warmup 5 --json > $O/${c}_${b}_$r.txt 2>&1; echo "$c bf16 $b r$r: $(j $O/${c}_${b}_$r.txt)"
done; done; done
el bench
timeout 120 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 --amp bf16 --json > $O/torch124_bf16.txt 2>&1; echo "pytorch 124m bf16 autocast: $(tail -1 $O/torch124_bf16.txt | cut -c1-300)"
el done
