#!/bin/bash
# session 15: where the bf16 tensor-core GEMM's time goes (diagnostic builds: 1 no global loads in
# the loop, 2 no multiply, 3 mma on register fragments), against cuBLAS bf16 on the same shapes
set -u
O=/tmp/o; mkdir -p $O; trap 'tar czf $OUT/results.tgz -C $O . 2>/dev/null' EXIT; exec > >(tee -a $OUT/log.txt) 2>&1
t0=$(date +%s); el() { echo "[t+$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu -j16 >/dev/null 2>$O/err.txt
[ -x build-gpu/clformer ] || { echo BUILD FAILED; tail -20 $O/err.txt; exit 1; }
el built
export CF_TEST_OPENCL_DEVICE=nvidia CF_REQUIRE_OPENCL=1
python3 bench/pytorch_gemm_shapes.py --config configs/gpt2_124m.json --dtype bf16 --min-time 0.05 > $O/torch_bf16.txt 2>&1; cat $O/torch_bf16.txt
el torch
for d in 0 1 2 3; do
  CF_GEMM_DIAG=$d timeout 150 ./build-gpu/test_cl_gemm_fast --bench --shapes 124m --prec bf16 --variant 1 --min-time 0.03 > $O/diag$d.txt 2>&1
  echo "== diag $d rc=$?"; grep -vE "^    all:" $O/diag$d.txt | grep -vE "^\(variant" | cut -c1-150
  el diag$d
done
# packed tiles: 16-deep (variant 1) against 32-deep slices (12: 128x128, 13: 128x64, 14: 64x64 wg 8)
CF_MATRIX_ENGINE=nvidia-mma-sync-packed-tiles CF_TEST_GEMM_FAST_ALL=1 timeout 120 ./build-gpu/test_cl_gemm_fast --prec bf16 --variant 12 > $O/packed_v12_test.txt 2>&1; echo "packed v12 test rc=$?: $(tail -1 $O/packed_v12_test.txt)"
for v in 1 12 13 14; do
  CF_MATRIX_ENGINE=nvidia-mma-sync-packed-tiles timeout 150 ./build-gpu/test_cl_gemm_fast --bench --shapes 124m --prec bf16 --variant $v --min-time 0.03 > $O/packed_v$v.txt 2>&1
  echo "== packed variant $v rc=$?"; grep -vE "^    all:" $O/packed_v$v.txt | grep -vE "^\(variant" | cut -c1-150
  el packed$v
done
el done
# flash attention on tensor cores against auto's kernels on the small configs (bf16), alternated
C=./build-gpu/clformer
j() { python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('%.0f tok/s, loss %.5f, peak %.0f MiB' % (d['tokens_per_s'], d['final_loss'], d['peak_device_bytes']/1048576))" $1 2>/dev/null || tail -3 $1; }
for c in wiki_cache_optimized wiki_llama; do for r in 1 2; do for k in auto mma; do
  CF_FLASH_KERNEL=$k timeout 60 $C bench configs/$c.json --device nvidia --precision bf16 --steps 20 --warmup 5 --json > $O/${c}_${k}_$r.txt 2>&1; echo "$c bf16 flash=$k r$r: $(j $O/${c}_${k}_$r.txt)"
done; done; done
el done2
