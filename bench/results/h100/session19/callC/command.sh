# Session 19, third call (same warm H100): 124M bf16 and tf32, clformer against PyTorch 2.11.
bash .device/setup.sh >/dev/null 2>&1; export CF_TEST_OPENCL_DEVICE=nvidia CF_REQUIRE_OPENCL=1 CF_CACHE_DIR=off
for p in bf16 tf32; do timeout 60 ./build-gpu/clformer bench configs/gpt2_124m.json --device nvidia --precision $p --steps 5 --warmup 2 --json > $OUT/r/b124_$p.txt 2>&1; done
timeout 90 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 --amp bf16 --json > $OUT/r/torch124_bf16.txt 2>&1
timeout 90 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 --tf32 --json > $OUT/r/torch124_tf32.txt 2>&1
