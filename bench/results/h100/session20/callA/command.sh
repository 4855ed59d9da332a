# Session 20, callA: bash .device/setup.sh && bash bench/results/gpu/session20/callA.sh
# (that script as committed in 6ae7510; the tree of 5a175de)
