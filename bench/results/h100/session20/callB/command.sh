# Session 20, callB: bash .device/setup.sh && bash bench/results/gpu/session20/callB.sh
# (that script as committed in 158458c; the tree of 3a6bb41)
