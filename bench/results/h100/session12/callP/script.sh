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
timeout 60 $T --variant 9 > $O/g_v9.txt 2>&1; echo "variant9 rc=$?: $(tail -1 $O/g_v9.txt)"
timeout 90 $T > $O/g_fp32.txt 2>&1; echo "fp32 all rc=$?: $(tail -1 $O/g_fp32.txt)"
for e in nvidia-mma-sync nvidia-mma-sync-packed-tiles; do
  for p in "--tf32" "--prec bf16" "--prec fp16"; do n=$(echo $p | tr -d ' -')
    CF_MATRIX_ENGINE=$e timeout 90 $T $p > $O/g_${e}_$n.txt 2>&1; echo "$e $p rc=$?: $(tail -1 $O/g_${e}_$n.txt)"
  done
done
el tests
for e in nvidia-mma-sync nvidia-mma-sync-packed-tiles; do
  for p in "--tf32" "--prec bf16"; do n=$(echo $p | tr -d ' -')
    CF_MATRIX_ENGINE=$e timeout 120 $T --bench --shapes 124m $p > $O/gb_${e}_$n.txt 2>&1; echo "gemm bench $e $p rc=$?"; tail -4 $O/gb_${e}_$n.txt
  done
done
el gemmbench
timeout 30 $C bench --peak --device nvidia --precision bf16 > $O/peak_bf16.txt 2>&1; grep -i -E 'peak|TFLOP' $O/peak_bf16.txt | head -3
for r in 1 2; do for e in nvidia-mma-sync nvidia-mma-sync-packed-tiles; do for p in bf16 tf32; do
  CF_MATRIX_ENGINE=$e timeout 60 $C bench configs/gpt2_124m.json --device nvidia --precision $p --steps 6 --warmup 2 > $O/b124_${p}_${e}_$r.txt 2>&1
  echo "124m $p $e r$r: $(grep -E 'throughput|MFU|mfu|peak device' $O/b124_${p}_${e}_$r.txt | tr -s ' ' | cut -c1-100 | tr '\n' '|')"
done; done; done
el b124
for a in "--amp bf16" "--tf32"; do n=$(echo $a | tr -d ' -')
  timeout 90 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 6 --warmup 2 $a --json > $O/t124_$n.txt 2>&1; python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('torch', sys.argv[2], d['tokens_per_s'], d['peak_device_bytes']/2**20)" $O/t124_$n.txt $n
done
el torch
timeout 60 $C bench configs/gpt2_124m.json --device nvidia --precision bf16 --steps 3 --warmup 2 --profile > $O/prof_bf16.txt 2>&1; echo "prof rc=$?"
timeout 60 $C bench configs/gpt2_124m.json --device nvidia --precision fp32 --steps 3 --warmup 2 --profile > $O/prof_fp32.txt 2>&1; echo "prof rc=$?"
el done
