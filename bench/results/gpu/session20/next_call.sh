#!/bin/bash
# Written in session 20 for the next device call: GPT-2 124M in fp32, tf32 and bf16 against PyTorch
# 2.11 on whatever card comes (the H200 has never run issue 13's comparison), with the loss's and
# attention's share of each step (--profile).
# Run from the repository root, carrying .device:
#   bash .device/setup.sh && bash bench/results/gpu/session20/next_call.sh
set -u
O=/tmp/o21; rm -rf $O; mkdir -p $O; save() { tar czf $OUT/results.tgz -C $O . 2>/dev/null; }; trap save EXIT; exec > >(tee -a $OUT/log.txt) 2>&1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu -j16 --target clformer >/dev/null 2>>$O/err.txt
[ -x build-gpu/clformer ] || { echo "BUILD FAILED"; tail -30 $O/err.txt; exit 1; }
export CF_TEST_OPENCL_DEVICE=nvidia CF_CACHE_DIR=$O/cache
j() { python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print('%.0f tok/s, loss %.5f, peak %.0f MiB' % (d['tokens_per_s'], d['final_loss'], d['peak_device_bytes']/1048576))" $1 2>/dev/null || tail -3 $1; }
for p in fp32 tf32 bf16; do timeout 70 ./build-gpu/clformer bench configs/gpt2_124m.json --device nvidia --precision $p --steps 5 --warmup 2 --json > $O/c124_$p.txt 2>&1; echo "124m $p clformer: $(j $O/c124_$p.txt)"; done
timeout 90 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 --json > $O/torch124_fp32.txt 2>&1; echo "pytorch fp32: $(tail -1 $O/torch124_fp32.txt | cut -c1-120)"
timeout 90 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 --tf32 --json > $O/torch124_tf32.txt 2>&1; echo "pytorch tf32: $(tail -1 $O/torch124_tf32.txt | cut -c1-120)"
timeout 90 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 --amp bf16 --json > $O/torch124_bf16.txt 2>&1; echo "pytorch bf16 autocast: $(tail -1 $O/torch124_bf16.txt | cut -c1-120)"
save
for p in fp32 bf16; do timeout 60 ./build-gpu/clformer bench configs/gpt2_124m.json --device nvidia --precision $p --steps 2 --warmup 1 --profile > $O/prof_$p.txt 2>&1; echo "profile $p: $(grep -E '^(gemm|attention|loss|total) ' $O/prof_$p.txt | tr -s ' ' | tr '\n' ' ')"; done
