cd /work/main
for r in 1 2; do for h in none all; do
./build/clformer bench configs/wiki_cache_optimized.json --device cpu --precision bf16 --steps 8 --warmup 2 --json half_activations=$h > /tmp/mem/w2_${h}_$r.txt 2>&1
done; done; echo done > /tmp/mem/W2DONE
