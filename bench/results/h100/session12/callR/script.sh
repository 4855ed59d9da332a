#!/bin/bash
# session 12: GEMM global loads two K slices ahead (CF_GEMM_PREFETCH=2) vs one, correctness and 124M steps
set -u
O=/tmp/o; mkdir -p $O; trap 'tar czf $OUT/results.tgz -C $O . 2>/dev/null' EXIT; exec > >(tee -a $OUT/log.txt) 2>&1
t0=$(date +%s); el() { echo "[t+$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu -j16 >/dev/null 2>$O/err.txt
[ -x build-gpu/clformer ] || { echo BUILD FAILED; exit 1; }
el built
C=./build-gpu/clformer; T=./build-gpu/test_cl_gemm_fast
export CF_TEST_OPENCL_DEVICE=nvidia CF_REQUIRE_OPENCL=1
CF_GEMM_PREFETCH=2 timeout 100 $T --small > $O/g_pf2_fp32.txt 2>&1 & p1=$!
CF_GEMM_PREFETCH=2 timeout 100 $T --small --prec bf16 > $O/g_pf2_bf16.txt 2>&1 & p2=$!
CF_GEMM_PREFETCH=2 timeout 100 $T --small --tf32 > $O/g_pf2_tf32.txt 2>&1 & p3=$!
wait $p1; echo "pf2 fp32 small rc=$?: $(tail -1 $O/g_pf2_fp32.txt)"
wait $p2; echo "pf2 bf16 small rc=$?: $(tail -1 $O/g_pf2_bf16.txt)"
wait $p3; echo "pf2 tf32 small rc=$?: $(tail -1 $O/g_pf2_tf32.txt)"
el tests
for p in bf16 tf32 fp32; do for r in 1 2; do for pf in 1 2; do
  CF_GEMM_PREFETCH=$pf timeout 60 $C bench configs/gpt2_124m.json --device nvidia --precision $p --steps 6 --warmup 2 > $O/b124_${p}_pf${pf}_$r.txt 2>&1
  echo "124m $p pf$pf r$r: $(grep -E 'throughput|MFU|peak device' $O/b124_${p}_pf${pf}_$r.txt | tr -s ' ' | cut -c1-60 | tr '\n' '|')"
done; done; done
el b124
for r in 1 2; do for pf in 1 2; do
  CF_GEMM_PREFETCH=$pf timeout 30 $C bench configs/wiki_cache_optimized.json --device nvidia --steps 20 --warmup 5 > $O/wiki_pf${pf}_$r.txt 2>&1; echo "wiki fp32 pf$pf r$r: $(grep -E 'throughput' $O/wiki_pf${pf}_$r.txt | tr -s ' ')"
done; done
el wiki
for a in "" "--tf32"; do n=fp32; [ -n "$a" ] && n=tf32
  timeout 90 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 6 --warmup 2 $a --json > $O/t124_$n.txt 2>&1; python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('torch', sys.argv[2], d['tokens_per_s'], d['peak_device_bytes']/2**20)" $O/t124_$n.txt $n
done
el done
