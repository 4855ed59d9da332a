#!/bin/bash
set -u
O=/tmp/o; mkdir -p $O; trap 'tar czf $OUT/results.tgz -C $O . 2>/dev/null' EXIT; exec > >(tee -a $OUT/log.txt) 2>&1
t0=$(date +%s); el() { echo "[t+$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
(cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu -j8 >/dev/null 2>$O/err.txt) & p1=$!
(cd .gpu/old && cmake -S . -B build-old -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-old -j8 >/dev/null 2>$O/err_old.txt) & p2=$!
wait $p1 $p2
[ -x build-gpu/clformer ] && [ -x .gpu/old/build-old/clformer ] || { echo BUILD FAILED; exit 1; }
el built
C=./build-gpu/clformer; OLD=./.gpu/old/build-old/clformer
export CF_TEST_OPENCL_DEVICE=nvidia CF_REQUIRE_OPENCL=1
for b in new old new old; do X=$C; [ $b = old ] && X=$OLD
  timeout 40 $X bench configs/gpt2_124m.json --device nvidia --steps 6 --warmup 2 > $O/b124_$b.txt 2>&1; echo "124m $b: $(grep -E 'throughput|peak device' $O/b124_$b.txt | tr -s ' ' | cut -c1-90)"
done
timeout 60 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 6 --warmup 2 --json > $O/t124.txt 2>&1; python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('torch T1024', d['tokens_per_s'], d['peak_device_bytes']/2**20)" $O/t124.txt
el 124m
for b in new old new old; do X=$C; [ $b = old ] && X=$OLD
  timeout 30 $X bench configs/wiki_cache_optimized.json --device nvidia --steps 20 --warmup 5 > $O/wiki_$b.txt 2>&1; echo "wiki $b: $(grep -E 'throughput' $O/wiki_$b.txt | tr -s ' ')"
done
el wiki
timeout 40 ./build-gpu/test_cl_flash_attention > $O/test_flash.txt 2>&1; echo "flash test rc=$?: $(tail -1 $O/test_flash.txt)"
timeout 30 ./build-gpu/test_cl_gemm_fast --small > $O/test_gemm.txt 2>&1; echo "gemm test rc=$?: $(tail -1 $O/test_gemm.txt)"
el done
