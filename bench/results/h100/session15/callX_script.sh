#!/bin/bash
# session 14: the flash forward and backward on tensor cores with every case (tf32, bf16, fp16,
# head sizes 8/16..128), 124M (bf16, tf32) and wiki_cache_optimized (bf16) with CF_FLASH_KERNEL=mma
# against auto, a profile
set -u
O=/tmp/o; mkdir -p $O; trap 'tar czf $OUT/results.tgz -C $O . 2>/dev/null' EXIT; exec > >(tee -a $OUT/log.txt) 2>&1
t0=$(date +%s); el() { echo "[t+$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu -j16 >/dev/null 2>$O/err.txt
[ -x build-gpu/clformer ] || { echo BUILD FAILED; tail -20 $O/err.txt; exit 1; }
el built
C=./build-gpu/clformer
export CF_TEST_OPENCL_DEVICE=nvidia CF_REQUIRE_OPENCL=1
CF_MATRIX_ENGINE=nvidia-mma-sync timeout 300 ./build-gpu/test_cl_flash_attention --kernel mma > $O/fa_mma.txt 2>&1; echo "test --kernel mma rc=$?: $(tail -1 $O/fa_mma.txt)"
python3 - $O/fa_mma.txt <<'PY'
import re,sys,collections
m=collections.defaultdict(float)
for l in open(sys.argv[1]):
    r=re.match(r'(ok|FAIL)\s+(\S+)\s+(.*?)\s+(out|lse|dq|dk|dv)\s+err (\S+)',l)
    if r: k=(r.group(2),r.group(4)); m[k]=max(m[k],float(r.group(5)))
print(' '.join('%s/%s %.2e' % (k[0],k[1],v) for k,v in sorted(m.items())))
PY
grep -E "^FAIL|rror" $O/fa_mma.txt | head -5
el tests
j() { python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('%.0f tok/s, loss %.5f, peak %.0f MiB' % (d['tokens_per_s'], d['final_loss'], d['peak_device_bytes']/1048576))" $1 2>/dev/null || tail -3 $1; }
for r in 1 2; do for k in auto mma; do
  CF_FLASH_KERNEL=$k timeout 60 $C bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 5 --warmup 2 --json > $O/b124_${k}_$r.txt 2>&1; echo "124m bf16 flash=$k r$r: $(j $O/b124_${k}_$r.txt)"
done; done
for r in 1; do for k in auto mma; do
  CF_FLASH_KERNEL=$k timeout 60 $C bench configs/gpt2_124m.json --device nvidia --precision tf32 --steps 5 --warmup 2 --json > $O/b124tf_${k}_$r.txt 2>&1; echo "124m tf32 flash=$k r$r: $(j $O/b124tf_${k}_$r.txt)"
done; done
for c in wiki_cache_optimized; do for k in auto mma; do
  CF_FLASH_KERNEL=$k timeout 60 $C bench configs/$c.json --device nvidia --precision bf16 --steps 20 --warmup 5 --json > $O/${c}_$k.txt 2>&1; echo "$c bf16 flash=$k: $(j $O/${c}_$k.txt)"
done; done
el bench
CF_FLASH_KERNEL=mma timeout 60 $C bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 3 --warmup 2 --profile > $O/prof_bf16_mma.txt 2>&1; echo "prof rc=$?"; sed -n 1,14p $O/prof_bf16_mma.txt
# registers and spills of the GEMM's and the flash kernels' tensor-core forms (bf16, hs 64)
CF_CACHE_DIR=off CF_GEMM_FAST_VERBOSE=1 CF_FLASH_KERNEL=mma timeout 60 $C bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 1 --warmup 1 > $O/regs_bf16.txt 2>&1; grep -E "registers|spill" $O/regs_bf16.txt | sed 's/^.*\(gemm_fast\|flash_mma\)/\1/' | sort | uniq | head -30
el done
