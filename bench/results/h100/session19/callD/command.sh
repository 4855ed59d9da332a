# Session 19, fourth call (a fresh H100, tree of 4aacb8a): the attention sweep with --precision now
# reaching its backend, and 124M fp32 against PyTorch fp32.
bash .device/setup.sh >/dev/null 2>&1; cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu -j16 --target clformer >/dev/null 2>&1
export CF_REQUIRE_OPENCL=1 CF_CACHE_DIR=off
for p in bf16 tf32 fp32; do timeout 60 ./build-gpu/clformer bench --attention-sweep configs/gpt2_124m.json --device nvidia --precision $p --sizes 1024,4096 --batch 8 > $OUT/r/sweep_$p.txt 2>&1; done
timeout 60 ./build-gpu/clformer bench configs/gpt2_124m.json --device nvidia --precision fp32 --steps 5 --warmup 2 --json > $OUT/r/b124_fp32.txt 2>&1
timeout 90 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 --json > $OUT/r/torch124_fp32.txt 2>&1
