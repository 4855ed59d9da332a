/* Minimal reproduction of an oclgrind artefact (Oclgrind 21.10, and its source as of 2026):
 * its --uninitialized checker keeps one shadow buffer per buffer index and never drops it when
 * a cl_mem is released (the plugin has no memoryDeallocated hook), while oclgrind's memory hands
 * a released buffer's index to the next clCreateBuffer. A new, larger buffer at a recycled index
 * keeps the old buffer's smaller shadow: kernelBegin sees a valid shadow at its base address and
 * does not re-create it, kernel stores past the old size are dropped from the shadow
 * (ShadowMemory::store ignores them) and loads there return poison. So a kernel that reads an
 * element written before (by itself or an earlier kernel) is reported ("Uninitialized value written to global memory") although
 * every element it reads was written first.
 *
 * Here: buffer A (64 floats) is written by a kernel and released (and its kernel given another
 * buffer, which drops the kernel's reference); buffer S (4096 floats) then gets A's index; the
 * kernel write_s stores s[i] = i, then read_s reads it into out[i] = 2 s[i] (out is checked on the
 * host: every element is right). oclgrind reports the elements from 64 on. With --host-init
 * S is first written in full from the host (one clEnqueueWriteBuffer), which makes oclgrind
 * re-create the shadow at S's size (Uninitialized::hostMemoryStore) and the same kernel is clean.
 *
 *     cc -O1 -o /tmp/recycled_buffer tools/oclgrind_repro/recycled_buffer.c -lOpenCL
 *     oclgrind --uninitialized /tmp/recycled_buffer               # reports, results correct
 *     oclgrind --uninitialized /tmp/recycled_buffer --host-init   # clean
 *
 * clformer's OpenCL backend writes its inference scratch buffers (src/backend/opencl/cl_infer.c)
 * in full from the host when it creates them, for this reason. */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *SRC =
    "__kernel void touch(__global float *a, int n) {\n"
    "    int i = get_global_id(0); if (i < n) a[i] = 1.0f; }\n"
    "__kernel void write_s(__global float *s, int n) {\n"
    "    int i = get_global_id(0); if (i < n) s[i] = (float)i; }\n"
    "__kernel void read_s(__global const float *s, __global float *out, int n) {\n"
    "    int i = get_global_id(0); if (i < n) out[i] = s[i] * 2.0f; }\n";

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        cl_int e_ = (x);                                                                           \
        if (e_ != CL_SUCCESS) {                                                                    \
            fprintf(stderr, "%s:%d: %s failed: %d\n", __FILE__, __LINE__, #x, e_);                  \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

int main(int argc, char **argv) {
    const int host_init = argc > 1 && !strcmp(argv[1], "--host-init");
    const int small = 64, n = 4096;
    cl_platform_id plats[16], plat = NULL;
    cl_device_id dev;
    cl_int err;
    cl_uint np = 0;
    CHECK(clGetPlatformIDs(16, plats, &np));
    for (cl_uint i = 0; i < np && !plat; i++) { /* the oclgrind platform */
        char name[256] = "";
        clGetPlatformInfo(plats[i], CL_PLATFORM_NAME, sizeof name, name, NULL);
        if (strstr(name, "Oclgrind")) plat = plats[i];
    }
    if (!plat) {
        fprintf(stderr, "no Oclgrind platform: run under oclgrind\n");
        return 1;
    }
    CHECK(clGetDeviceIDs(plat, CL_DEVICE_TYPE_ALL, 1, &dev, NULL));
    cl_context ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    CHECK(err);
    cl_command_queue q = clCreateCommandQueue(ctx, dev, 0, &err);
    CHECK(err);
    cl_program p = clCreateProgramWithSource(ctx, 1, &SRC, NULL, &err);
    CHECK(err);
    CHECK(clBuildProgram(p, 1, &dev, "", NULL, NULL));
    cl_kernel touch = clCreateKernel(p, "touch", &err);
    CHECK(err);
    cl_kernel ws = clCreateKernel(p, "write_s", &err);
    CHECK(err);
    cl_kernel rs = clCreateKernel(p, "read_s", &err);
    CHECK(err);
    cl_mem out = clCreateBuffer(ctx, CL_MEM_READ_WRITE, sizeof(float) * n, NULL, &err);
    CHECK(err);
    /* a small buffer used by a kernel, then released: its index goes back to oclgrind's pool */
    cl_mem a = clCreateBuffer(ctx, CL_MEM_READ_WRITE, sizeof(float) * small, NULL, &err);
    CHECK(err);
    size_t g = small;
    CHECK(clSetKernelArg(touch, 0, sizeof a, &a));
    CHECK(clSetKernelArg(touch, 1, sizeof small, &small));
    CHECK(clEnqueueNDRangeKernel(q, touch, 1, NULL, &g, NULL, 0, NULL, NULL));
    CHECK(clFinish(q));
    CHECK(clReleaseMemObject(a));
    /* a kernel holds its buffer arguments: A is freed once touch's argument is another buffer
     * (as when clformer launches a kernel on the next op's buffers) */
    CHECK(clSetKernelArg(touch, 0, sizeof out, &out));
    /* the larger buffer: created at the recycled index */
    cl_mem s = clCreateBuffer(ctx, CL_MEM_READ_WRITE, sizeof(float) * n, NULL, &err);
    CHECK(err);
    if (host_init) {
        float *zero = calloc((size_t)n, sizeof(float));
        if (!zero) return 1;
        CHECK(clEnqueueWriteBuffer(q, s, CL_TRUE, 0, sizeof(float) * n, zero, 0, NULL, NULL));
        free(zero);
    }
    g = n;
    CHECK(clSetKernelArg(ws, 0, sizeof s, &s));
    CHECK(clSetKernelArg(ws, 1, sizeof n, &n));
    CHECK(clEnqueueNDRangeKernel(q, ws, 1, NULL, &g, NULL, 0, NULL, NULL));
    CHECK(clSetKernelArg(rs, 0, sizeof s, &s));
    CHECK(clSetKernelArg(rs, 1, sizeof out, &out));
    CHECK(clSetKernelArg(rs, 2, sizeof n, &n));
    CHECK(clEnqueueNDRangeKernel(q, rs, 1, NULL, &g, NULL, 0, NULL, NULL));
    float *h = malloc(sizeof(float) * n);
    if (!h) return 1;
    CHECK(clEnqueueReadBuffer(q, out, CL_TRUE, 0, sizeof(float) * n, h, 0, NULL, NULL));
    int bad = 0;
    for (int i = 0; i < n; i++) bad += h[i] != 2.0f * (float)i;
    printf("%s: %d of %d results wrong\n", host_init ? "host-initialised" : "plain", bad, n);
    free(h);
    clReleaseMemObject(s);
    clReleaseMemObject(out);
    clReleaseKernel(touch);
    clReleaseKernel(ws);
    clReleaseKernel(rs);
    clReleaseProgram(p);
    clReleaseCommandQueue(q);
    clReleaseContext(ctx);
    return bad != 0;
}
