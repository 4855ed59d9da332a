# Session 20, callC: right after callB on the same warm H100 (its build-gpu and program cache), the
# tree of callB: 124M in fp32, tf32, bf16 against PyTorch 2.11 (fp32 TF32 off, TF32 on, bf16
# autocast), as run (one command line, split here):
bash .device/setup.sh >/dev/null 2>&1; export CF_TEST_OPENCL_DEVICE=nvidia CF_CACHE_DIR=/tmp/o20b/cache; O=$OUT
for p in fp32 tf32 bf16; do timeout 60 ./build-gpu/clformer bench configs/gpt2_124m.json --device nvidia --precision $p --steps 5 --warmup 2 --json > $O/c124_$p.txt 2>&1; done
timeout 80 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 --json > $O/torch124_fp32.txt 2>&1
timeout 80 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 --tf32 --json > $O/torch124_tf32.txt 2>&1
timeout 80 python3 bench/pytorch_gpt.py --config configs/gpt2_124m.json --device cuda --steps 5 --warmup 2 --amp bf16 --json > $O/torch124_bf16.txt 2>&1
