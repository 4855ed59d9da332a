#!/bin/bash
# session 15 (short: the last device time): the refined rule (64x64 packed bk-32 blocks for NT and
# for NN with few 128x128 blocks) against the same tree with that branch off, alternated
set -u
O=/tmp/o; rm -rf $O; mkdir -p $O; trap 'tar czf $OUT/results.tgz -C $O . 2>/dev/null' EXIT; exec > >(tee -a $OUT/log.txt) 2>&1
t0=$(date +%s); el() { echo "[t+$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
rm -rf /tmp/base && mkdir -p /tmp/base && tar cf - --exclude='./build*' --exclude=./.device --exclude=./.gpu --exclude=./.git --exclude=./bench/results . | tar xf - -C /tmp/base
sed -i 's/    if (tb || (K <= 8192 \&\& blocks128 < 2ll \* compute_units)) \*out = packed;/    if (0) *out = packed;/' /tmp/base/src/backend/opencl/cl_gemm_fast.c
grep -c "    if (0) \*out = packed;" /tmp/base/src/backend/opencl/cl_gemm_fast.c
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu -j16 --target clformer >/dev/null 2>$O/err.txt &
(cmake -S /tmp/base -B /tmp/base/build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build /tmp/base/build -j16 --target clformer >/dev/null 2>$O/err_base.txt); wait
[ -x build-gpu/clformer ] && [ -x /tmp/base/build/clformer ] || { echo BUILD FAILED; tail -20 $O/err.txt $O/err_base.txt; exit 1; }
el built
j() { python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('%.0f tok/s, loss %.5f, peak %.0f MiB' % (d['tokens_per_s'], d['final_loss'], d['peak_device_bytes']/1048576))" $1 2>/dev/null || tail -3 $1; }
for c in wiki_cache_optimized wiki_llama; do for b in base new; do
  C=./build-gpu/clformer; [ $b = base ] && C=/tmp/base/build/clformer
  timeout 40 $C bench configs/$c.json --device nvidia --precision bf16 --steps 20 --warmup 5 --json > $O/${c}_${b}.txt 2>&1; echo "$c bf16 $b: $(j $O/${c}_${b}.txt)"
done; done
el wiki
for b in base new; do C=./build-gpu/clformer; [ $b = base ] && C=/tmp/base/build/clformer
  timeout 40 $C bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 4 --warmup 2 --json > $O/b124_${b}.txt 2>&1; echo "124m bf16 $b: $(j $O/b124_${b}.txt)"
done
el done
