/* clformer: the matrix engines the OpenCL backend can use for its GEMM (docs/opencl.md, "Matrix
 * engines"). Each is one row of cf_cl_matrix_engines (cl_matrix.c) and one kernel file in
 * cl_kernels/ with the kernels and arguments of gemm_fast.cl (gemm_fast_nn, _nt, _tn, _tt,
 * gemm_fast_reduce, and gemm_fast_mma_peak: the engine's peak for bench's MFU, counted as
 * gemm_fast.cl's for the same MMA_KIND) and its build-time parameters (RM, RN, BK, WG, VEC, EPI_*); the row says which
 * devices it applies to (vendor, extension, NVIDIA compute capability), which precisions it
 * implements and the build options of each, and whether it was verified on hardware. An
 * unverified row is never chosen by itself: CF_MATRIX_ENGINE=<name> (cf_backend_options
 * .matrix_engine) selects it for testing on a device it applies to; "off" selects none (the
 * portable form: fp32 multiply-adds, bf16/fp16 inputs rounded in the kernel). A row whose file can
 * emulate its instructions in OpenCL C says with which build option (emulation);
 * CF_MATRIX_ENGINE=emulate:<name> then builds that row's kernels with it on any device, CPUs
 * included: the engine's staging and fragment addressing tested where the engine is absent. */
#ifndef CF_CL_MATRIX_H
#define CF_CL_MATRIX_H

#include <stddef.h>

#include "backend/opencl/cl_internal.h"
#include "clformer/config.h"

/* Precisions (enum cf_precision's values), also the index of cf_cl_matrix_engine.defines */
enum {
    CF_CL_MX_NONE = CF_PREC_FP32,
    CF_CL_MX_TF32 = CF_PREC_TF32,
    CF_CL_MX_BF16 = CF_PREC_BF16,
    CF_CL_MX_FP16 = CF_PREC_FP16
};
#define CF_CL_MX_PRECISIONS 4

typedef struct cf_cl_matrix_engine {
    const char *name;      /* what CF_MATRIX_ENGINE names */
    const char *file;      /* its GEMM kernel file in cl_kernels/ */
    const char *vendor;    /* a substring of CL_DEVICE_VENDOR it needs (case-insensitive); NULL:
                            * any */
    const char *extension; /* a device extension it needs; NULL: none */
    int min_nv_cc;         /* NVIDIA compute capability (major*10 + minor) it needs; 0: none */
    /* build options of its form for each precision (index CF_CL_MX_*); NULL: not implemented */
    const char *defines[CF_CL_MX_PRECISIONS];
    int verified;          /* its tests passed on hardware: chosen without CF_MATRIX_ENGINE */
    const char *emulation; /* the build option that emulates its instructions in OpenCL C on any
                            * device (CF_MATRIX_ENGINE=emulate:<name>, for tests; slow); NULL:
                            * none */
    const char *flash;     /* its flash attention kernels for tf32/bf16/fp16 (flash_mma.cl's
                            * kernels and arguments: forward, dq, dkv), built after `file` with
                            * -DGF_MMA_HELPERS_ONLY; NULL: none */
    int flash_verified;    /* those kernels' tests passed on hardware: auto runs them */
    const char *half_gemm; /* its GEMM on half operands for bf16 / fp16 (gemm_half.cl's kernels
                            * and arguments: gh_pack, gh_colsum, gh_gemm), built after `file`
                            * with -DGF_MMA_HELPERS_ONLY; NULL: none */
    int half_gemm_verified; /* its tests passed on hardware: auto runs it (cl_gemm_half.c) */
} cf_cl_matrix_engine;

/* The engine a backend runs: a row, and whether it runs emulated */
typedef struct cf_cl_matrix_choice {
    const cf_cl_matrix_engine *e; /* NULL: none (the portable form) */
    int emulate;                  /* built with e->emulation (CF_MATRIX_ENGINE=emulate:<name>) */
} cf_cl_matrix_choice;

extern const cf_cl_matrix_engine cf_cl_matrix_engines[];
extern const int cf_cl_matrix_n_engines;

/* Whether engine e applies to device d (a GPU with the vendor, extension and compute capability
 * the row asks for); why (optional) says what is missing. */
int cf_cl_matrix_applies(const cf_cl_matrix_engine *e, const cf_cl_device_info *d, char *why,
                         size_t why_len);

/* The engine of table (n rows) for device d and precision prec (CF_CL_MX_*); .e NULL: the
 * portable form. force: NULL or "" = the first verified row that applies and implements prec;
 * "off"/"none" = none; a row's name = that row if it applies to d and implements prec (verified
 * or not); "emulate:<name>" = that row emulated, on any device, if it has an emulation and
 * implements prec; otherwise none, with *note saying why. note (optional) receives a line for the
 * user when the choice deviates from the default (a forced or refused engine); "" otherwise. */
cf_cl_matrix_choice cf_cl_matrix_select(const cf_cl_matrix_engine *table, int n,
                                        const cf_cl_device_info *d, int prec, const char *force,
                                        char *note, size_t note_len);

/* The build options of choice c's form for precision prec (its row's, plus the emulation's when
 * emulated) into buf; the engine's name as CF_MATRIX_ENGINE spells it ("emulate:<name>" when
 * emulated) into name (optional). */
void cf_cl_matrix_options(cf_cl_matrix_choice c, int prec, char *buf, size_t len);
void cf_cl_matrix_name(cf_cl_matrix_choice c, char *name, size_t len);

#endif
