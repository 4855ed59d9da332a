/* clformer: the matrix-engine table and its selection (cl_matrix.h). */
#define _GNU_SOURCE /* strcasestr */
#include "backend/opencl/cl_matrix.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Adding an engine: a kernel file with gemm_fast.cl's kernels and arguments, and a row here with
 * verified = 0 until test_cl_gemm_fast --tf32 / --prec bf16 / --prec fp16 (run with
 * CF_MATRIX_ENGINE=<name>) pass on the hardware. */
const cf_cl_matrix_engine cf_cl_matrix_engines[] = {
    /* NVIDIA tensor cores through inline PTX mma.sync (m16n8k8 tf32; m16n8k16 / m16n8k8 bf16 and
     * f16; cvt.rn.{bf16,f16}x2.f32 needs sm_80): verified on an H100 (all three precisions) */
    {"nvidia-mma-sync",
     "gemm_fast.cl",
     "NVIDIA",
     "cl_nv_device_attribute_query",
     80,
     {NULL, "-DMMA_KIND=1", "-DMMA_KIND=2", "-DMMA_KIND=3"},
     1,
     0},
    /* packed tiles (gemm_fast.cl, MMA_PACKED_TILES): the values converted once as they are
     * staged, laid out as the fragments take them, 64-bit fragment reads; checked by emulation
     * (below), not yet run on hardware: only by name until it is */
    {"nvidia-mma-sync-packed-tiles",
     "gemm_fast.cl",
     "NVIDIA",
     "cl_nv_device_attribute_query",
     80,
     {NULL, "-DMMA_KIND=1 -DMMA_PACKED_TILES=1", "-DMMA_KIND=2 -DMMA_PACKED_TILES=1",
      "-DMMA_KIND=3 -DMMA_PACKED_TILES=1"},
     0,
     0},
    /* the same kernels with each mma.sync and cvt emulated in OpenCL C (gemm_fast.cl,
     * MMA_EMULATE): the tensor-core forms' addressing checked on any device, PoCL in CI
     * (ctest test_cl_gemm_fast_emu_*); slow, for tests only */
    {"emulated-mma-sync",
     "gemm_fast.cl",
     NULL,
     NULL,
     0,
     {NULL, "-DMMA_KIND=1 -DMMA_EMULATE", "-DMMA_KIND=2 -DMMA_EMULATE",
      "-DMMA_KIND=3 -DMMA_EMULATE"},
     0,
     1},
    {"emulated-mma-sync-packed-tiles",
     "gemm_fast.cl",
     NULL,
     NULL,
     0,
     {NULL, "-DMMA_KIND=1 -DMMA_PACKED_TILES=1 -DMMA_EMULATE",
      "-DMMA_KIND=2 -DMMA_PACKED_TILES=1 -DMMA_EMULATE",
      "-DMMA_KIND=3 -DMMA_PACKED_TILES=1 -DMMA_EMULATE"},
     0,
     1},
};
const int cf_cl_matrix_n_engines = (int)(sizeof cf_cl_matrix_engines / sizeof cf_cl_matrix_engines[0]);

/* what cf_cl_matrix_applies reports: the reason into why (why_len > 0) */
static int applies(const cf_cl_matrix_engine *e, const cf_cl_device_info *d, char *why,
                   size_t why_len);

int cf_cl_matrix_applies(const cf_cl_matrix_engine *e, const cf_cl_device_info *d, char *why,
                         size_t why_len) {
    char buf[640];
    const int r = applies(e, d, buf, sizeof buf);
    if (why && why_len) snprintf(why, why_len, "%s", buf);
    return r;
}

static int applies(const cf_cl_matrix_engine *e, const cf_cl_device_info *d, char *why,
                   size_t why_len) {
    why[0] = 0;
    if (e->emulated) return 1;
    if (!(d->type & CL_DEVICE_TYPE_GPU)) {
        snprintf(why, why_len, "%s is not a GPU", d->name);
        return 0;
    }
    if (e->vendor && !strcasestr(d->vendor, e->vendor)) {
        snprintf(why, why_len, "%s's vendor is %s, not %s", d->name, d->vendor, e->vendor);
        return 0;
    }
    if (e->extension && !strstr(d->extensions, e->extension)) {
        snprintf(why, why_len, "%s does not report %s", d->name, e->extension);
        return 0;
    }
    if (e->min_nv_cc > 0 && d->nv_cc < e->min_nv_cc) {
        snprintf(why, why_len, "%s has compute capability %d.%d, %s needs %d.%d or later",
                 d->name, d->nv_cc / 10, d->nv_cc % 10, e->name, e->min_nv_cc / 10,
                 e->min_nv_cc % 10);
        return 0;
    }
    return 1;
}

const cf_cl_matrix_engine *cf_cl_matrix_select(const cf_cl_matrix_engine *table, int n,
                                               const cf_cl_device_info *d, int prec,
                                               const char *force, char *note, size_t note_len) {
    char tmp[8];
    if (!note) note = tmp, note_len = sizeof tmp;
    note[0] = 0;
    if (prec <= CF_CL_MX_NONE || prec >= CF_CL_MX_PRECISIONS) return NULL;
    if (force && *force) {
        if (!strcasecmp(force, "off") || !strcasecmp(force, "none")) {
            snprintf(note, note_len, "matrix engine off (CF_MATRIX_ENGINE=%s)", force);
            return NULL;
        }
        for (int i = 0; i < n; i++) {
            const cf_cl_matrix_engine *e = &table[i];
            if (strcasecmp(force, e->name) != 0) continue;
            char why[640];
            if (!cf_cl_matrix_applies(e, d, why, sizeof why)) {
                snprintf(note, note_len, "matrix engine %s (CF_MATRIX_ENGINE) does not apply: %s",
                         e->name, why);
                return NULL;
            }
            if (!e->defines[prec]) {
                snprintf(note, note_len,
                         "matrix engine %s (CF_MATRIX_ENGINE) has no %s form", e->name,
                         cf_precision_name(prec));
                return NULL;
            }
            snprintf(note, note_len, "matrix engine %s (CF_MATRIX_ENGINE)%s", e->name,
                     e->emulated   ? ": an emulation for tests, slow"
                     : e->verified ? ""
                                   : ", not verified on hardware: check the results");
            return e;
        }
        snprintf(note, note_len, "matrix engine '%s' (CF_MATRIX_ENGINE) unknown:", force);
        for (int i = 0; i < n; i++) {
            const size_t len = strlen(note);
            snprintf(note + len, note_len - len, "%s %s", i ? "," : "", table[i].name);
        }
        const size_t len = strlen(note);
        snprintf(note + len, note_len - len, "%s or off; none used", n ? "" : " (none built in)");
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        const cf_cl_matrix_engine *e = &table[i];
        if (e->verified && !e->emulated && e->defines[prec] && cf_cl_matrix_applies(e, d, NULL, 0))
            return e;
    }
    return NULL;
}
