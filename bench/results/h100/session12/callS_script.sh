#!/bin/bash
# session 12: packed tiles with 8-row groups shifted (bank conflicts of the x-contiguous stores), vs the fp32-tile form
set -u
O=/tmp/o; mkdir -p $O; trap 'tar czf $OUT/results.tgz -C $O . 2>/dev/null' EXIT; exec > >(tee -a $OUT/log.txt) 2>&1
t0=$(date +%s); el() { echo "[t+$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu -j16 >/dev/null 2>$O/err.txt
[ -x build-gpu/clformer ] || { echo BUILD FAILED; exit 1; }
el built
C=./build-gpu/clformer; T=./build-gpu/test_cl_gemm_fast
export CF_TEST_OPENCL_DEVICE=nvidia CF_REQUIRE_OPENCL=1
e=nvidia-mma-sync-packed-tiles
CF_MATRIX_ENGINE=$e timeout 150 $T --tf32 > $O/g_tf32.txt 2>&1 & p1=$!
CF_MATRIX_ENGINE=$e timeout 150 $T --prec bf16 > $O/g_bf16.txt 2>&1 & p2=$!
CF_MATRIX_ENGINE=$e timeout 150 $T --prec fp16 > $O/g_fp16.txt 2>&1 & p3=$!
wait $p1; echo "packed tf32 rc=$?: $(tail -1 $O/g_tf32.txt)"
wait $p2; echo "packed bf16 rc=$?: $(tail -1 $O/g_bf16.txt)"
wait $p3; echo "packed fp16 rc=$?: $(tail -1 $O/g_fp16.txt)"
el tests
for p in bf16 tf32; do for r in 1 2; do for e in nvidia-mma-sync nvidia-mma-sync-packed-tiles; do
  CF_MATRIX_ENGINE=$e timeout 60 $C bench configs/gpt2_124m.json --device nvidia --precision $p --steps 6 --warmup 2 > $O/b124_${p}_${e}_$r.txt 2>&1
  echo "124m $p $e r$r: $(grep -E 'throughput|MFU|peak device' $O/b124_${p}_${e}_$r.txt | tr -s ' ' | cut -c1-60 | tr '\n' '|')"
done; done; done
el b124
for e in nvidia-mma-sync nvidia-mma-sync-packed-tiles; do
  CF_MATRIX_ENGINE=$e timeout 30 $C bench configs/wiki_cache_optimized.json --device nvidia --precision bf16 --steps 20 --warmup 5 > $O/wiki_bf16_$e.txt 2>&1; echo "wiki bf16 $e: $(grep -E 'throughput' $O/wiki_bf16_$e.txt | tr -s ' ')"
done
CF_MATRIX_ENGINE=nvidia-mma-sync-packed-tiles timeout 60 $C bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 3 --warmup 2 --profile > $O/prof_bf16_packed.txt 2>&1; echo "prof rc=$?"
el done
