#!/bin/bash
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
CF_MATRIX_ENGINE=$e timeout 200 $T --tf32 > $O/g_tf32.txt 2>&1 & p1=$!
CF_MATRIX_ENGINE=$e timeout 200 $T --prec bf16 > $O/g_bf16.txt 2>&1 & p2=$!
CF_MATRIX_ENGINE=$e timeout 200 $T --prec fp16 > $O/g_fp16.txt 2>&1 & p3=$!
timeout 200 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 6 --warmup 2 --amp bf16 --json > $O/t124_bf16.txt 2>&1
wait $p1; echo "packed tf32 rc=$?: $(tail -1 $O/g_tf32.txt)"
wait $p2; echo "packed bf16 rc=$?: $(tail -1 $O/g_bf16.txt)"
wait $p3; echo "packed fp16 rc=$?: $(tail -1 $O/g_fp16.txt)"
python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('torch bf16', d['tokens_per_s'], d['peak_device_bytes']/2**20)" $O/t124_bf16.txt
el tests
for r in 1 2; do for e in nvidia-mma-sync nvidia-mma-sync-packed-tiles; do for p in bf16; do
  CF_MATRIX_ENGINE=$e timeout 60 $C bench configs/gpt2_124m.json --device nvidia --precision $p --steps 6 --warmup 2 > $O/b124_${p}_${e}_$r.txt 2>&1
  echo "124m $p $e r$r: $(grep -E 'throughput|MFU|mfu|peak device' $O/b124_${p}_${e}_$r.txt | tr -s ' ' | cut -c1-100 | tr '\n' '|')"
done; done; done
el b124
timeout 60 $C bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 3 --warmup 2 --profile > $O/prof_bf16.txt 2>&1; echo "prof rc=$?"
el done
