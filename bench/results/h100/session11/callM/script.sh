#!/bin/bash
# session 11, first call: head ranges of the matrix flash backward at T 8192, the 16-wide GEMM bench, engine peaks
set -u
O=/tmp/o; mkdir -p $O; trap 'tar czf $OUT/results.tgz -C $O . 2>/dev/null' EXIT; exec > >(tee -a $OUT/log.txt) 2>&1
t0=$(date +%s); el() { echo "[t+$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu -j16 >/dev/null 2>$O/err.txt || { echo BUILD FAILED; tail $O/err.txt; exit 1; }
el built
C=./build-gpu/clformer
export CF_TEST_OPENCL_DEVICE=nvidia CF_REQUIRE_OPENCL=1
timeout 150 ./build-gpu/test_cl_flash_attention > $O/test_flash.txt 2>&1; echo "test_cl_flash_attention rc=$?"; tail -1 $O/test_flash.txt
el test
for s in tiled:0 auto:0 auto:3300000000 auto:5400000000; do k=${s%%:*}; b=${s##*:}; [ $b = 0 ] && unset CF_FLASH_SCRATCH || export CF_FLASH_SCRATCH=$b
  CF_FLASH_KERNEL=$k timeout 60 $C bench --attention-sweep configs/gpt2_124m.json --device nvidia --sizes 8192 --batch 1 --min-time 0.1 > $O/att8k_${k}_$b.txt 2>&1; echo "$k $b: $(tail -1 $O/att8k_${k}_$b.txt)"
  CF_FLASH_KERNEL=$k timeout 90 $C bench configs/gpt2_124m.json --device nvidia --steps 4 --warmup 2 batch_size=1 max_length=8192 > $O/b124_8192_${k}_$b.txt 2>&1; echo "T8192 $k $b: $(grep -E 'throughput|peak device' $O/b124_8192_${k}_$b.txt | tr -s ' ')"
done; unset CF_FLASH_SCRATCH
timeout 90 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 4 --warmup 2 --set batch_size=1 --set max_length=8192 --json > $O/t124_8192.txt 2>&1; python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('torch T8192', d['tokens_per_s'], d['peak_device_bytes']/2**20)" $O/t124_8192.txt
el long
timeout 200 ./build-gpu/test_cl_gemm_fast --bench --shapes 124m --min-time 0.02 > $O/gemm_bench.txt 2>&1; echo "bench rc=$?"; grep -v "^ *all" $O/gemm_bench.txt | tail -45
el gemm bench
for p in fp32 tf32 bf16; do timeout 30 $C bench --peak --device nvidia --precision $p 2>&1 | tail -2; done | tee $O/peaks.txt
el peaks
