/* clformer: the peak fp32 rate of an OpenCL device for MFU: a kernel of independent
 * multiply-add chains, enough work-items to fill every compute unit, timed on the backend's own
 * queue. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "backend/opencl/cl_internal.h"
#include "bench/bench.h"

/* Each work-item runs 8 chains x = x*a + b (mad: fused where the device has FMA, else the fastest
 * multiply-add it has), 16 rounds per loop iteration; a < 1 keeps the values bounded. Every
 * chain feeds the stored result, so none can be removed. */
static const char *PEAK_SRC =
    "__kernel void peak_mad(__global float *out, const float a, const float b, const int iters) {\n"
    "  const size_t gid = get_global_id(0);\n"
    "  float x0 = (float)(gid & 7) * 1e-3f, x1 = x0 + 0.1f, x2 = x0 + 0.2f, x3 = x0 + 0.3f;\n"
    "  float x4 = x0 + 0.4f, x5 = x0 + 0.5f, x6 = x0 + 0.6f, x7 = x0 + 0.7f;\n"
    "  for (int i = 0; i < iters; i++) {\n"
    "#define R x0 = mad(x0, a, b); x1 = mad(x1, a, b); x2 = mad(x2, a, b); x3 = mad(x3, a, b); \\\n"
    "          x4 = mad(x4, a, b); x5 = mad(x5, a, b); x6 = mad(x6, a, b); x7 = mad(x7, a, b);\n"
    "    R R R R R R R R R R R R R R R R\n"
    "#undef R\n"
    "  }\n"
    "  out[gid] = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7;\n"
    "}\n";

#define PEAK_CHAINS 8
#define PEAK_ROUNDS 16

/* One timed launch; returns seconds (host clock around a finish) in *sec. */
static int peak_launch(cf_cl_ctx *ctx, cl_kernel k, size_t global, int iters, double *sec) {
    CF_CHECK_CL(ctx, clSetKernelArg(k, 3, sizeof(cl_int), &(cl_int){iters}));
    double t0 = cf_time_now();
    CF_CHECK_CL(ctx, clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &global, NULL, 0, NULL, NULL));
    CF_CHECK_CL(ctx, clFinish(ctx->queue));
    *sec = cf_time_now() - t0;
    return CF_OK;
}

int cf_cl_peak_gflops(cf_backend *be, double seconds, double *gflops) {
    *gflops = 0.0;
    if (!cf_backend_is_opencl(be)) return CF_ERR_UNSUPPORTED;
    cf_cl_ctx *ctx = (cf_cl_ctx *)be->ctx;
    if (!(seconds > 0)) seconds = 0.3;
    cl_int err = CL_SUCCESS;
    cl_program prog = NULL;
    cl_kernel k = NULL;
    cl_mem out = NULL;
    int rc = CF_ERR_DEVICE;
    /* enough work-items for many waves on every compute unit: 4096 per unit covers 64 warps of
     * 64 lanes, or a CPU's SIMD lanes many times over */
    const size_t cu = ctx->dev.compute_units ? ctx->dev.compute_units : 1;
    const size_t global = cu * 4096;
    prog = clCreateProgramWithSource(ctx->context, 1, &PEAK_SRC, NULL, &err);
    if (err != CL_SUCCESS) {
        CF_ERROR("peak kernel: clCreateProgramWithSource failed: %s", cf_cl_errstr(err));
        goto done;
    }
    err = clBuildProgram(prog, 1, &ctx->dev.device, "-cl-mad-enable", NULL, NULL);
    if (err != CL_SUCCESS) {
        char log[2048] = "";
        clGetProgramBuildInfo(prog, ctx->dev.device, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log,
                              NULL);
        CF_ERROR("peak kernel: build failed on %s: %s; build log: %s", ctx->dev.name,
                 cf_cl_errstr(err), log);
        rc = CF_ERR_BUILD;
        goto done;
    }
    k = clCreateKernel(prog, "peak_mad", &err);
    if (err != CL_SUCCESS) {
        CF_ERROR("peak kernel: clCreateKernel failed: %s", cf_cl_errstr(err));
        goto done;
    }
    out = clCreateBuffer(ctx->context, CL_MEM_WRITE_ONLY, global * sizeof(float), NULL, &err);
    if (err != CL_SUCCESS) {
        CF_ERROR("peak kernel: clCreateBuffer of %zu bytes failed: %s", global * sizeof(float),
                 cf_cl_errstr(err));
        rc = CF_ERR_NOMEM;
        goto done;
    }
    const cl_float a = 0.999f, b = 1e-3f;
    if (clSetKernelArg(k, 0, sizeof(cl_mem), &out) != CL_SUCCESS ||
        clSetKernelArg(k, 1, sizeof(cl_float), &a) != CL_SUCCESS ||
        clSetKernelArg(k, 2, sizeof(cl_float), &b) != CL_SUCCESS) {
        CF_ERROR("peak kernel: clSetKernelArg failed");
        goto done;
    }
    /* calibrate until one launch takes 20 ms, then launches of a third of the budget, best of 3 */
    int iters = 16;
    double t = 0.0;
    for (;;) {
        if ((rc = peak_launch(ctx, k, global, iters, &t)) < 0) goto done;
        if (t >= 0.02 || iters >= (1 << 24)) break;
        iters *= 4;
    }
    double want = (double)iters * (seconds / 3.0) / (t > 1e-9 ? t : 1e-9);
    int run = want > (double)(1 << 28) ? (1 << 28) : (int)want;
    if (run < iters) run = iters;
    double best = 0.0;
    for (int r = 0; r < 3; r++) {
        if ((rc = peak_launch(ctx, k, global, run, &t)) < 0) goto done;
        const double flops = 2.0 * PEAK_CHAINS * PEAK_ROUNDS * (double)run * (double)global;
        if (t > 0 && flops / t > best) best = flops / t;
    }
    *gflops = best / 1e9;
    rc = best > 0 ? CF_OK : CF_ERR_DEVICE;
done:
    if (out) clReleaseMemObject(out);
    if (k) clReleaseKernel(k);
    if (prog) clReleaseProgram(prog);
    return rc;
}
