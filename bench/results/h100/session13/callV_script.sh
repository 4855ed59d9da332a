#!/bin/bash
# session 13: bench/precision.sh on the H100 (wiki_cache_optimized, wiki_llama: clformer fp32, tf32,
# bf16, fp16 with half_activations all, against PyTorch fp32, TF32, bf16 and fp16 autocast)
set -u
O=/tmp/o; mkdir -p $O; trap 'tar czf $OUT/results.tgz -C $O . 2>/dev/null' EXIT; exec > >(tee -a $OUT/log.txt) 2>&1
t0=$(date +%s); el() { echo "[t+$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu -j16 >/dev/null 2>$O/err.txt
[ -x build-gpu/clformer ] || { echo BUILD FAILED; exit 1; }
el built
timeout 420 bash bench/precision.sh --clformer ./build-gpu/clformer --device nvidia --torch-device cuda --steps 30 --warmup 5 --out $O/precision
el done
