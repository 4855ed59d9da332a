# Session 20, callD: the tree of e92f7e2 on an H100 (driver 580.159.04), carrying .device:
bash .device/setup.sh >/dev/null 2>&1; cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build-gpu -j16 --target test_cl_ops >/dev/null 2>&1; export CF_TEST_OPENCL_DEVICE=nvidia CF_REQUIRE_OPENCL=1; timeout 150 ./build-gpu/test_cl_ops > $OUT/test_cl_ops.txt 2>&1
# (the first attempt forgot to carry .device: CMake found no cJSON; rerun at once on the same machine)
