/* clformer test: the matrix-engine table and its selection (src/backend/opencl/cl_matrix.h) on
 * device descriptions, no device needed: the built-in NVIDIA row for every reduced precision on a
 * compute capability 8.0+ GPU and on nothing else (an older GPU, a CPU device, another vendor);
 * CF_MATRIX_ENGINE's "off", a forced row that does not apply or lacks the precision, an unknown
 * name (each with its note); an unverified row (a test table's stand-in for a vendor extension
 * such as cl_intel_subgroup_matrix_multiply_accumulate) never chosen by itself, chosen when named,
 * with a note; and every built-in row names a kernel file that exists and build options for at
 * least one precision. */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "backend/opencl/cl_matrix.h"
#include "test_expect.h"

static cf_cl_device_info device(const char *name, const char *vendor, cl_device_type type,
                                const char *ext, int nv_cc) {
    cf_cl_device_info d;
    memset(&d, 0, sizeof d);
    snprintf(d.name, sizeof d.name, "%s", name);
    snprintf(d.vendor, sizeof d.vendor, "%s", vendor);
    snprintf(d.extensions, sizeof d.extensions, "%s", ext);
    d.type = type;
    d.nv_cc = nv_cc;
    return d;
}

/* cf_cl_matrix_select's row; whether it is emulated in last_emulate */
static int last_emulate;
static const cf_cl_matrix_engine *sel(const cf_cl_matrix_engine *table, int n,
                                      const cf_cl_device_info *d, int prec, const char *force,
                                      char *note, size_t note_len) {
    const cf_cl_matrix_choice c = cf_cl_matrix_select(table, n, d, prec, force, note, note_len);
    last_emulate = c.emulate;
    return c.e;
}

static const char *pn(int p) {
    return p == CF_CL_MX_TF32 ? "tf32" : p == CF_CL_MX_BF16 ? "bf16" : "fp16";
}

static void test_builtin(void) {
    const cf_cl_matrix_engine *T = cf_cl_matrix_engines;
    const int n = cf_cl_matrix_n_engines;
    const cf_cl_device_info h100 = device("NVIDIA H100 80GB HBM3", "NVIDIA Corporation",
                                          CL_DEVICE_TYPE_GPU,
                                          "cl_khr_global_int32_base_atomics "
                                          "cl_nv_device_attribute_query cl_khr_fp64",
                                          90);
    const cf_cl_device_info t4 = device("Tesla T4", "NVIDIA Corporation", CL_DEVICE_TYPE_GPU,
                                        "cl_nv_device_attribute_query", 75);
    const cf_cl_device_info pocl = device("pthread-AMD EPYC", "AuthenticAMD", CL_DEVICE_TYPE_CPU,
                                          "cl_khr_fp16 cl_khr_fp64", 0);
    const cf_cl_device_info arc = device("Intel(R) Arc(TM) A770", "Intel(R) Corporation",
                                         CL_DEVICE_TYPE_GPU,
                                         "cl_intel_subgroups "
                                         "cl_intel_subgroup_matrix_multiply_accumulate",
                                         0);
    char note[640];
    for (int p = CF_CL_MX_TF32; p <= CF_CL_MX_FP16; p++) {
        const cf_cl_matrix_engine *e = sel(T, n, &h100, p, NULL, note, sizeof note);
        expect(e && !strcmp(e->name, "nvidia-mma-sync") && !note[0] && !last_emulate,
               "H100, %s: %s, no note", pn(p), e ? e->name : "none");
        expect(!sel(T, n, &t4, p, NULL, note, sizeof note),
               "compute capability 7.5, %s: none", pn(p));
        expect(!sel(T, n, &pocl, p, NULL, note, sizeof note),
               "CPU device, %s: none", pn(p));
        expect(!sel(T, n, &arc, p, NULL, note, sizeof note),
               "Intel GPU (no built-in row), %s: none", pn(p));
    }
    expect(!sel(T, n, &h100, CF_CL_MX_NONE, NULL, note, sizeof note),
           "H100, fp32: none");
    const cf_cl_matrix_engine *e =
        sel(T, n, &h100, CF_CL_MX_BF16, "off", note, sizeof note);
    expect(!e && strstr(note, "off"), "CF_MATRIX_ENGINE=off on the H100: none (%s)", note);
    e = sel(T, n, &t4, CF_CL_MX_BF16, "nvidia-mma-sync", note, sizeof note);
    expect(!e && strstr(note, "does not apply") && strstr(note, "compute capability 7.5"),
           "nvidia-mma-sync forced on compute capability 7.5: none (%s)", note);
    e = sel(T, n, &pocl, CF_CL_MX_FP16, "NVIDIA-MMA-SYNC", note, sizeof note);
    expect(!e && strstr(note, "not a GPU"), "forced on a CPU device: none (%s)", note);
    e = sel(T, n, &h100, CF_CL_MX_TF32, "nvidia-mma-sync", note, sizeof note);
    expect(e && strstr(note, "nvidia-mma-sync") && !strstr(note, "not verified") && !last_emulate,
           "forced where it applies: chosen, a verified row, not emulated (%s)", note);
    e = sel(T, n, &t4, CF_CL_MX_BF16, "emulate:nvidia-mma-sync", note, sizeof note);
    expect(e && !strcmp(e->name, "nvidia-mma-sync") && last_emulate,
           "emulate: on a GPU the row does not apply to (compute capability 7.5): emulated (%s)",
           note);
    e = sel(T, n, &h100, CF_CL_MX_TF32, "tensorcores", note, sizeof note);
    expect(!e && strstr(note, "unknown") && strstr(note, "nvidia-mma-sync"),
           "an unknown name: none, the names listed (%s)", note);
    for (int i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/cl_kernels/%s", CF_SOURCE_DIR, T[i].file);
        FILE *f = fopen(path, "r");
        int forms = 0;
        for (int p = 1; p < CF_CL_MX_PRECISIONS; p++) forms += T[i].defines[p] != NULL;
        expect(f != NULL && forms > 0 && !T[i].defines[CF_CL_MX_NONE],
               "row %s: kernel file cl_kernels/%s exists, %d precision forms", T[i].name,
               T[i].file, forms);
        if (f) fclose(f);
    }
}

/* A table with one more row, unverified, for a vendor extension: what adding an engine means
 * (one kernel file plus this row) and how it stays off until verified */
static void test_unverified(void) {
    const cf_cl_matrix_engine T[2] = {
        cf_cl_matrix_engines[0],
        {"intel-xmx-test", "gemm_fast.cl", "Intel", "cl_intel_subgroup_matrix_multiply_accumulate",
         0, {NULL, NULL, "-DMMA_KIND=0 -DROUND_IN=1", NULL}, 0, NULL, NULL, 0, NULL, 0},
    };
    const cf_cl_device_info arc = device("Intel(R) Arc(TM) A770", "Intel(R) Corporation",
                                         CL_DEVICE_TYPE_GPU,
                                         "cl_intel_subgroups "
                                         "cl_intel_subgroup_matrix_multiply_accumulate",
                                         0);
    const cf_cl_device_info igpu = device("Intel(R) UHD Graphics 770", "Intel(R) Corporation",
                                          CL_DEVICE_TYPE_GPU, "cl_intel_subgroups", 0);
    const cf_cl_device_info h100 = device("NVIDIA H100 80GB HBM3", "NVIDIA Corporation",
                                          CL_DEVICE_TYPE_GPU, "cl_nv_device_attribute_query", 90);
    char note[640];
    const cf_cl_matrix_engine *e = sel(T, 2, &arc, CF_CL_MX_BF16, NULL, note,
                                                       sizeof note);
    expect(!e && !note[0], "unverified row: not chosen by itself on a device it applies to");
    e = sel(T, 2, &arc, CF_CL_MX_BF16, "intel-xmx-test", note, sizeof note);
    expect(e == &T[1] && strstr(note, "not verified") && !last_emulate,
           "unverified row named by CF_MATRIX_ENGINE: chosen, with a note (%s)", note);
    e = sel(T, 2, &arc, CF_CL_MX_FP16, "intel-xmx-test", note, sizeof note);
    expect(!e && strstr(note, "no fp16 form"), "named for a precision it lacks: none (%s)", note);
    e = sel(T, 2, &igpu, CF_CL_MX_BF16, "intel-xmx-test", note, sizeof note);
    expect(!e && strstr(note, "does not report cl_intel_subgroup_matrix_multiply_accumulate"),
           "named on a GPU without the extension: none (%s)", note);
    e = sel(T, 2, &h100, CF_CL_MX_BF16, "intel-xmx-test", note, sizeof note);
    expect(!e && strstr(note, "vendor"), "named on another vendor's GPU: none (%s)", note);
    e = sel(T, 2, &h100, CF_CL_MX_BF16, NULL, note, sizeof note);
    expect(e == &T[0], "the H100 still gets the verified row: %s", e ? e->name : "none");
}

/* CF_MATRIX_ENGINE=emulate:<name>: a row with an emulation runs emulated on every device, CPUs
 * included, only when so named, with its note and its build options plus the emulation's; a row
 * without one is refused, and so is a precision the row lacks */
static void test_emulated(void) {
    const cf_cl_matrix_engine T[2] = {
        {"emu-test", "gemm_fast.cl", "NVIDIA", "cl_nv_device_attribute_query", 80,
         {NULL, "-DMMA_KIND=1", "-DMMA_KIND=2", NULL}, 1, "-DMMA_EMULATE", NULL, 0, NULL, 0},
        {"plain-test", "gemm_fast.cl", "NVIDIA", NULL, 80,
         {NULL, "-DMMA_KIND=1", NULL, NULL}, 1, NULL, NULL, 0, NULL, 0},
    };
    const cf_cl_device_info cpu = device("pthread-skylake-avx512", "AuthenticAMD",
                                         CL_DEVICE_TYPE_CPU, "cl_khr_fp64", 0);
    char note[640], opts[160], name[96];
    expect(!cf_cl_matrix_applies(&T[0], &cpu, NULL, 0), "the row itself does not apply to a CPU");
    const cf_cl_matrix_engine *e = sel(T, 2, &cpu, CF_CL_MX_BF16, NULL, note, sizeof note);
    expect(!e, "nothing chosen by itself on the CPU device");
    e = sel(T, 2, &cpu, CF_CL_MX_BF16, "emulate:emu-test", note, sizeof note);
    expect(e == &T[0] && last_emulate && strstr(note, "an emulation for tests"),
           "emulate:emu-test on a CPU device: the row, emulated, with its note (%s)", note);
    cf_cl_matrix_choice c = {e, last_emulate};
    cf_cl_matrix_options(c, CF_CL_MX_BF16, opts, sizeof opts);
    cf_cl_matrix_name(c, name, sizeof name);
    expect(!strcmp(opts, "-DMMA_KIND=2 -DMMA_EMULATE") && !strcmp(name, "emulate:emu-test"),
           "emulated: the row's options plus the emulation's (%s), named %s", opts, name);
    c.emulate = 0;
    cf_cl_matrix_options(c, CF_CL_MX_TF32, opts, sizeof opts);
    cf_cl_matrix_name(c, name, sizeof name);
    expect(!strcmp(opts, "-DMMA_KIND=1") && !strcmp(name, "emu-test"),
           "not emulated: the row's options (%s), named %s", opts, name);
    e = sel(T, 2, &cpu, CF_CL_MX_FP16, "emulate:emu-test", note, sizeof note);
    expect(!e && strstr(note, "no fp16 form"), "emulated, a precision it lacks: none (%s)", note);
    e = sel(T, 2, &cpu, CF_CL_MX_TF32, "emulate:plain-test", note, sizeof note);
    expect(!e && strstr(note, "has no emulation"), "a row without an emulation: none (%s)", note);
    e = sel(T, 2, &cpu, CF_CL_MX_TF32, "emulate:nothing", note, sizeof note);
    expect(!e && strstr(note, "unknown") && strstr(note, "emulate:<name>"),
           "emulate: of an unknown row: none, the names listed (%s)", note);
    int n_emulation = 0;
    for (int i = 0; i < cf_cl_matrix_n_engines; i++) {
        const cf_cl_matrix_engine *r = &cf_cl_matrix_engines[i];
        if (!r->emulation) continue;
        n_emulation++;
        char force[128];
        snprintf(force, sizeof force, "emulate:%s", r->name);
        e = sel(cf_cl_matrix_engines, cf_cl_matrix_n_engines, &cpu, CF_CL_MX_TF32, force, note,
                sizeof note);
        expect(e == r && last_emulate, "built-in row %s emulated on a CPU device (%s)", r->name,
               note);
    }
    expect(n_emulation >= 1, "the built-in table has a row with an emulation (%d)", n_emulation);
}

int main(void) {
    test_builtin();
    test_unverified();
    test_emulated();
    printf("%s test_cl_matrix: %d of %d checks failed\n", fails ? "FAIL" : "PASS", fails, checks);
    return fails ? 1 : 0;
}
