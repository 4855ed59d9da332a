cd /work/main
for cfg in wiki_cache_optimized gpt2_124m; do
  st=6; [ $cfg = gpt2_124m ] && st=1
  for p in fp32 bf16 fp16; do for h in none gemm all; do
    [ $p = fp32 ] && [ $h != all ] && continue
    ./build/clformer bench configs/$cfg.json --device cpu --precision $p --steps $st --warmup 1 --json half_activations=$h > /tmp/mem/${cfg}_${p}_$h.txt 2>&1
  done; done
done
echo done > /tmp/mem/DONE
