/* clformer: the matrix-engine table and its selection (cl_matrix.h). */
#define _GNU_SOURCE /* strcasestr */
#include "backend/opencl/cl_matrix.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Adding an engine: a kernel file with gemm_fast.cl's kernels and arguments, and a row here with
 * verified = 0 until test_cl_gemm_fast --tf32 / --prec bf16 / --prec fp16 (run with
 * CF_MATRIX_ENGINE=<name>) pass on the hardware. */
/* gemm_fast.cl with each mma.sync a collective of the warp's work-items through local memory and
 * each cvt in OpenCL C (MMA_EMULATE): its tensor-core forms run on PoCL in CI (ctest
 * test_cl_gemm_fast_emu_*, CF_MATRIX_ENGINE=emulate:<row>) */
#define EMULATE_MMA_SYNC "-DMMA_EMULATE"

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
     EMULATE_MMA_SYNC,
     /* the flash kernels (forward and backward; tf32, bf16, fp16; flash_mma.cl): checked by
      * emulation on every build (test_cl_flash_attention --kernel mma) and under oclgrind, and
      * verified on an H100 (bench/results/h100/session15/callX: all 288 checks of
      * test_cl_flash_attention --kernel mma, every format and head size, passed), so auto runs
      * them */
     "flash_mma.cl",
     1,
     /* the GEMM on half operands (gemm_half.cl: the operands converted once, ldmatrix): checked
      * by emulation on every build (test_cl_gemm_half) and under oclgrind, and verified on an
      * H100 (bench/results/h100/session17/callA: all 50 checks of test_cl_gemm_half in bf16 and
      * in fp16 passed; GPT-2 124M bf16 1.27x the register-blocked kernel), so auto runs it.
      * The staging written since over GH_SPASS passes passed the same 50 bf16 checks on an H100
      * (bench/results/h100/session18/callA) */
     "gemm_half.cl",
     1},
    /* packed tiles (gemm_fast.cl, MMA_PACKED_TILES): the values converted once as they are
     * staged, laid out as the fragments take them, 64-bit fragment reads. Its first layout passed
     * the tests on an H100 in all three precisions but ran GPT-2 124M in bf16 at 46,201 tokens/s
     * against this table's first row's 72,437 (bench/results/h100/session12/callQ); the likely
     * cause, read from the code (not measured): the stores of x-contiguous operands put all 32
     * lanes on one bank. The layout now shifts each group of 8 rows: on an H100 it passed
     * test_cl_gemm_fast --prec bf16 (367 checks) and --tf32 (365), fp16 not run after the
     * change, and ran 124M in bf16 at 65,032 tokens/s against the first row's 68,465-68,544 in
     * the same call (0.95x; bench/results/h100/session13/callT). Slower, and not run in fp16 on
     * hardware since the change: unverified (by name only) */
    {"nvidia-mma-sync-packed-tiles",
     "gemm_fast.cl",
     "NVIDIA",
     "cl_nv_device_attribute_query",
     80,
     {NULL, "-DMMA_KIND=1 -DMMA_PACKED_TILES=1", "-DMMA_KIND=2 -DMMA_PACKED_TILES=1",
      "-DMMA_KIND=3 -DMMA_PACKED_TILES=1"},
     0,
     EMULATE_MMA_SYNC,
     NULL,
     0,
     NULL,
     0},
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

cf_cl_matrix_choice cf_cl_matrix_select(const cf_cl_matrix_engine *table, int n,
                                        const cf_cl_device_info *d, int prec, const char *force,
                                        char *note, size_t note_len) {
    const cf_cl_matrix_choice none = {NULL, 0};
    char tmp[8];
    if (!note) note = tmp, note_len = sizeof tmp;
    note[0] = 0;
    if (prec <= CF_CL_MX_NONE || prec >= CF_CL_MX_PRECISIONS) return none;
    if (force && *force) {
        if (!strcasecmp(force, "off") || !strcasecmp(force, "none")) {
            snprintf(note, note_len, "matrix engine off (CF_MATRIX_ENGINE=%s)", force);
            return none;
        }
        const int emulate = !strncasecmp(force, "emulate:", 8);
        const char *name = emulate ? force + 8 : force;
        for (int i = 0; i < n; i++) {
            const cf_cl_matrix_engine *e = &table[i];
            if (strcasecmp(name, e->name) != 0) continue;
            char why[640];
            if (emulate && !e->emulation) {
                snprintf(note, note_len,
                         "matrix engine %s (CF_MATRIX_ENGINE=%s) has no emulation; none used",
                         e->name, force);
                return none;
            }
            if (!emulate && !cf_cl_matrix_applies(e, d, why, sizeof why)) {
                snprintf(note, note_len, "matrix engine %s (CF_MATRIX_ENGINE) does not apply: %s",
                         e->name, why);
                return none;
            }
            if (!e->defines[prec]) {
                snprintf(note, note_len, "matrix engine %s (CF_MATRIX_ENGINE) has no %s form",
                         e->name, cf_precision_name(prec));
                return none;
            }
            if (emulate)
                snprintf(note, note_len,
                         "matrix engine %s emulated (CF_MATRIX_ENGINE=%s): an emulation for "
                         "tests, slow",
                         e->name, force);
            else
                snprintf(note, note_len, "matrix engine %s (CF_MATRIX_ENGINE)%s", e->name,
                         e->verified ? "" : ", not verified on hardware: check the results");
            const cf_cl_matrix_choice c = {e, emulate};
            return c;
        }
        snprintf(note, note_len, "matrix engine '%s' (CF_MATRIX_ENGINE) unknown:", force);
        for (int i = 0; i < n; i++) {
            const size_t len = strlen(note);
            snprintf(note + len, note_len - len, "%s %s", i ? "," : "", table[i].name);
        }
        const size_t len = strlen(note);
        snprintf(note + len, note_len - len, "%s or off (emulate:<name> for an emulation); none used",
                 n ? "" : " (none built in)");
        return none;
    }
    for (int i = 0; i < n; i++) {
        const cf_cl_matrix_engine *e = &table[i];
        if (e->verified && e->defines[prec] && cf_cl_matrix_applies(e, d, NULL, 0)) {
            const cf_cl_matrix_choice c = {e, 0};
            return c;
        }
    }
    return none;
}

void cf_cl_matrix_options(cf_cl_matrix_choice c, int prec, char *buf, size_t len) {
    if (!c.e || prec <= CF_CL_MX_NONE || prec >= CF_CL_MX_PRECISIONS || !c.e->defines[prec] ||
        (c.emulate && !c.e->emulation)) {
        if (len) buf[0] = 0;
        return;
    }
    snprintf(buf, len, "%s%s%s", c.e->defines[prec], c.emulate ? " " : "",
             c.emulate ? c.e->emulation : "");
}

void cf_cl_matrix_name(cf_cl_matrix_choice c, char *name, size_t len) {
    snprintf(name, len, "%s%s", c.emulate ? "emulate:" : "", c.e ? c.e->name : "none");
}
