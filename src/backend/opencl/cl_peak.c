/* clformer: what the benchmark needs from inside the OpenCL backend: the device's peak fp32 rate
 * for MFU (a kernel of independent multiply-add chains, enough work-items to fill every compute
 * unit, timed on the backend's own queue) and the bytes of the backend's private scratch buffers,
 * which do not pass through the allocation wrapper. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "backend/opencl/cl_internal.h"
#include "backend/opencl/cl_matrix.h"
#include "bench/bench.h"

/* Each work-item runs 8 chains x = x*a + b of VW-wide vectors (mad: fused where the device has
 * FMA, else the fastest multiply-add it has), 16 rounds per loop iteration; a < 1 keeps the
 * values bounded. VW is the device's native float vector width: 1 on GPUs (the lanes are the
 * work-items), 8 or 16 on CPU devices such as PoCL, whose compilers do not vectorise a loop that
 * runs inside each work-item across work-items. Every chain feeds the stored result. */
static const char *PEAK_SRC =
    "#if VW == 1\n"
    "typedef float vt;\n"
    "#elif VW == 2\n"
    "typedef float2 vt;\n"
    "#elif VW == 4\n"
    "typedef float4 vt;\n"
    "#elif VW == 8\n"
    "typedef float8 vt;\n"
    "#else\n"
    "typedef float16 vt;\n"
    "#endif\n"
    "__kernel void peak_mad(__global vt *out, const float fa, const float fb, const int iters) {\n"
    "  const size_t gid = get_global_id(0);\n"
    "  const vt a = (vt)(fa), b = (vt)(fb);\n"
    "  vt x0 = (vt)((float)(gid & 7) * 1e-3f), x1 = x0 + 0.1f, x2 = x0 + 0.2f, x3 = x0 + 0.3f;\n"
    "  vt x4 = x0 + 0.4f, x5 = x0 + 0.5f, x6 = x0 + 0.6f, x7 = x0 + 0.7f;\n"
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

/* CPU time of the whole process, seconds (0 where there is no such clock). */
static double process_seconds(void) {
#ifdef CLOCK_PROCESS_CPUTIME_ID
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0) return ts.tv_sec + ts.tv_nsec * 1e-9;
#endif
    return 0.0;
}

/* One launch. *sec: its wall time (host clock around a finish); *cpu: the process CPU time it
 * took (for CPU devices such as PoCL, whose worker threads run inside this process). */
static int peak_launch(cf_cl_ctx *ctx, cl_kernel k, cl_uint iarg, size_t global,
                       const size_t *local, int iters, double *sec, double *cpu) {
    CF_CHECK_CL(ctx, clSetKernelArg(k, iarg, sizeof(cl_int), &(cl_int){iters}));
    const double c0 = process_seconds(), t0 = cf_time_now();
    CF_CHECK_CL(ctx, clEnqueueNDRangeKernel(ctx->queue, k, 1, NULL, &global, local, 0, NULL, NULL));
    CF_CHECK_CL(ctx, clFinish(ctx->queue));
    *sec = cf_time_now() - t0;
    *cpu = process_seconds() - c0;
    return CF_OK;
}

/* Calibrate until one launch of k takes 10 ms, then time launches of about 50 ms (at least 3, for
 * `seconds` in all), keeping the best (a shared device or host may disturb some of them): the
 * kernel's argument iarg is its loop count, and one loop iteration of the whole launch does
 * flops_per_iter. A CPU device runs its work-items on this process's threads, one per compute
 * unit: its rate per CPU-second times the units is what the cores can do, even while other
 * processes share them (the same measure as the CPU backend's peak). GPUs: wall time. */
static int peak_time(cf_cl_ctx *ctx, cl_kernel k, cl_uint iarg, size_t global, const size_t *local,
                     double flops_per_iter, double seconds, int cpu_device, size_t cu,
                     double *gflops) {
    int rc, iters = 16;
    double t = 0.0, cpu = 0.0;
    for (;;) {
        if ((rc = peak_launch(ctx, k, iarg, global, local, iters, &t, &cpu)) < 0) return rc;
        if (t >= 0.01 || iters >= (1 << 24)) break;
        iters *= 2;
    }
    const double per_run = seconds / 3.0 < 0.05 ? seconds / 3.0 : 0.05;
    double want = (double)iters * per_run / (t > 1e-9 ? t : 1e-9);
    int run = want > (double)(1 << 28) ? (1 << 28) : (int)want;
    if (run < 1) run = 1;
    int nruns = (int)(seconds / per_run + 0.5);
    if (nruns < 3) nruns = 3;
    double best = 0.0;
    for (int r = 0; r < nruns; r++) {
        if ((rc = peak_launch(ctx, k, iarg, global, local, run, &t, &cpu)) < 0) return rc;
        const double flops = flops_per_iter * (double)run;
        double secs = t;
        if (cpu_device && cpu > 0 && cpu / cu < t) secs = cpu / cu;
        if (secs > 0 && flops / secs > best) best = flops / secs;
    }
    *gflops = best / 1e9;
    return best > 0 ? CF_OK : CF_ERR_DEVICE;
}

/* The peak of this context's matrix engine at its precision (cl_matrix.h): the engine file's
 * gemm_fast_mma_peak, 8 warps per group and 16 groups per compute unit. */
int cf_cl_peak_engine_gflops(cf_backend *be, double seconds, double *gflops) {
    *gflops = 0.0;
    if (!cf_backend_is_opencl(be)) return CF_ERR_UNSUPPORTED;
    cf_cl_ctx *ctx = (cf_cl_ctx *)be->ctx;
    /* (an emulated engine, cl_matrix.h, has no peak kernel: the fp32 peak stands) */
    if (!ctx->mx || !ctx->mx_prec || ctx->mx_emulate) return CF_ERR_UNSUPPORTED;
    if (!(seconds > 0)) seconds = 0.3;
    char form[160], opts[192];
    const cf_cl_matrix_choice c = {ctx->mx, 0};
    cf_cl_matrix_options(c, ctx->mx_prec, form, sizeof form);
    snprintf(opts, sizeof opts, "-cl-std=CL1.2 %s", form);
    cl_program prog = NULL;
    cl_kernel k = NULL;
    static const char *const names[] = {"gemm_fast_mma_peak"};
    cl_kernel *const ks[] = {&k};
    int rc = cf_cl_build_kernels(ctx, ctx->mx->file, opts, &prog, 1, names, ks);
    if (rc < 0) return rc;
    const size_t cu = ctx->dev.compute_units ? ctx->dev.compute_units : 1;
    const size_t local = 256, global = cu * 16 * local;
    cl_int err = CL_SUCCESS;
    cl_mem out = clCreateBuffer(ctx->context, CL_MEM_WRITE_ONLY, global * sizeof(float), NULL, &err);
    if (err != CL_SUCCESS) {
        cf_cl_fail(ctx, "engine peak kernel: clCreateBuffer failed: %s", cf_cl_errstr(err));
        rc = CF_ERR_NOMEM;
    } else if (clSetKernelArg(k, 0, sizeof(cl_mem), &out) != CL_SUCCESS) {
        cf_cl_fail(ctx, "engine peak kernel: clSetKernelArg failed");
        rc = CF_ERR_DEVICE;
    } else {
        /* gemm_fast.cl: GF_PEAK_CHAINS (8) mma.sync a warp per iteration, 2048 flops each for
         * TF32 (m16n8k8), 4096 for bf16 / fp16 (m16n8k16) */
        const double per_mma = ctx->mx_prec == CF_PREC_TF32 ? 2048.0 : 4096.0;
        rc = peak_time(ctx, k, 1, global, &local, 8.0 * per_mma * (double)(global / 32), seconds,
                       0, cu, gflops);
    }
    if (out) clReleaseMemObject(out);
    clReleaseKernel(k);
    clReleaseProgram(prog);
    return rc;
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
    const int cpu_device = (ctx->dev.type & CL_DEVICE_TYPE_CPU) != 0;
    cl_uint vw = 1;
    if (clGetDeviceInfo(ctx->dev.device, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT, sizeof vw, &vw,
                        NULL) != CL_SUCCESS ||
        (vw != 1 && vw != 2 && vw != 4 && vw != 8 && vw != 16))
        vw = 1;
    /* CPU devices: one work-item per SIMD lane group is plenty; GPUs: many waves per unit */
    const size_t global = cu * (vw > 1 ? 256 : 4096);
    char opts[64];
    snprintf(opts, sizeof opts, "-cl-mad-enable -DVW=%u", vw);
    prog = clCreateProgramWithSource(ctx->context, 1, &PEAK_SRC, NULL, &err);
    if (err != CL_SUCCESS) {
        CF_ERROR("peak kernel: clCreateProgramWithSource failed: %s", cf_cl_errstr(err));
        goto done;
    }
    err = clBuildProgram(prog, 1, &ctx->dev.device, opts, NULL, NULL);
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
    const size_t out_bytes = global * vw * sizeof(float);
    out = clCreateBuffer(ctx->context, CL_MEM_WRITE_ONLY, out_bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        CF_ERROR("peak kernel: clCreateBuffer of %zu bytes failed: %s", out_bytes,
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
    rc = peak_time(ctx, k, 3, global, NULL,
                   2.0 * PEAK_CHAINS * PEAK_ROUNDS * vw * (double)global, seconds, cpu_device, cu,
                   gflops);
done:
    if (out) clReleaseMemObject(out);
    if (k) clReleaseKernel(k);
    if (prog) clReleaseProgram(prog);
    return rc;
}

uint64_t cf_cl_scratch_bytes(cf_backend *be) {
    if (!cf_backend_is_opencl(be)) return 0;
    const cf_cl_ctx *ctx = (const cf_cl_ctx *)be->ctx;
    uint64_t n = 0;
    for (int i = 0; i < CF_SCRATCH_COUNT; i++)
        n += ctx->scratch_bytes[i];
    return n;
}
