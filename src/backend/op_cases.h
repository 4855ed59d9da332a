/* clformer: the op case table: every op of struct cf_backend_ops, forward and backward, with shape
 * cases and seeded random inputs (after ggml's test-backend-ops). One row per op says how to build
 * its inputs for a shape case, how to run it through the cf_be_* wrappers and which of its tensors
 * are outputs; a case runs on any backend and its outputs are compared with the CPU backend's:
 *   err  = max|a - ref| / (max|ref| + 1e-20)     (normalised maximum error, <= the row's tolerance)
 *   nmse = sum (a - ref)^2 / (sum ref^2 + 1e-20)  (ggml's NMSE, <= min(tolerance, 1e-7))
 * Tensors sit at an offset inside guard elements that must come back untouched; assigned outputs
 * start as NaN (an element left unwritten shows); outputs must be finite.
 *
 * Shared by `clformer devices --verify` (src/backend/verify.c) and tests/test_backend_ops.c. */
#ifndef CF_OP_CASES_H
#define CF_OP_CASES_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"

#define CF_OPCASE_PAD 5            /* guard elements before and after every tensor */
#define CF_OPCASE_GUARD 12345.678f /* their value */
#define CF_OPCASE_MAXT 10          /* tensors per case */
#define CF_OPCASE_MAXP 7           /* shape parameters per case */
#define CF_OPCASE_MAXC 12          /* cases per row */
#define CF_OPCASE_DLOSS 0.37f      /* the fused cross-entropy's dloss (every row's loss weight) */

enum {
    CF_OPT_IN = 1,   /* read by the op (uploaded from init) */
    CF_OPT_OUT = 2,  /* compared after the op */
    CF_OPT_INT = 4,  /* int32 data (tokens, targets): never perturbed */
    CF_OPT_ACC = 8,  /* gradient the op accumulates into (a gradient check subtracts the initial
                      * values) */
    CF_OPT_LOSS = 16 /* forward output that enters a finite-difference loss */
};

typedef struct {
    const char *name;
    size_t n;
    int flags;   /* CF_OPT_* */
    float *init; /* n elements (int32 bits for CF_OPT_INT) */
} cf_optensor;

typedef struct {
    int p[CF_OPCASE_MAXP];
    int nt;
    cf_optensor t[CF_OPCASE_MAXT];
    cf_rng rng;
    int status; /* CF_OK, or why the case could not be built (CF_ERR_NOMEM) */
} cf_opcase;

typedef struct cf_oprow {
    const char *op;     /* printed name */
    const char *fwd;    /* forward row whose tensors (by name) feed this row's inputs, or NULL */
    int grad;           /* check "d<X>" outputs against finite differences of fwd in X */
    const char *pnames; /* names of the case parameters, space-separated ("-": unnamed) */
    void (*build)(cf_opcase *c);
    int (*run)(cf_backend *be, const cf_opcase *c, cf_buffer **b);
    double tol; /* normalised max error allowed */
    int tol_k;  /* >= 0: tol scales with sqrt(p[tol_k]) (a dot product's length) */
    int ncases;
    int cases[CF_OPCASE_MAXC][CF_OPCASE_MAXP];
} cf_oprow;

/* The table (*n rows) and a row by its printed name (NULL when none). */
const cf_oprow *cf_oprows(int *n);
const cf_oprow *cf_oprow_find(const char *op);

/* Case ci of row r with its seeded inputs (salt varies the seed); CF_ERR_NOMEM when the inputs
 * could not be allocated (free the case anyway). */
int cf_opcase_make(const cf_oprow *r, int ci, uint64_t salt, cf_opcase *c);
/* The case of r's forward row with r's case ci shape and the seed cf_opcase_feed_from_forward
 * uses (f = cf_oprow_find(r->fwd)). */
int cf_opcase_make_forward(const cf_oprow *f, const cf_oprow *r, int ci, cf_opcase *fc);
void cf_opcase_free(cf_opcase *c);
/* Index of the case's tensor called name, -1 when none. */
int cf_opcase_find(const cf_opcase *c, const char *name);
/* Runs the case on be; out[i] receives tensor i's whole buffer (guards included, malloc'd) for
 * output tensors. Returns the op's status. */
int cf_opcase_run(cf_backend *be, const cf_oprow *r, const cf_opcase *c, float **out);
void cf_opcase_free_outs(float **out, int n);
/* Inputs that come from a forward op: builds r's forward row's case with the same shape, runs it
 * on cpu and copies every tensor of the same name into c's inputs. CF_OK when r has no forward. */
int cf_opcase_feed_from_forward(cf_backend *cpu, const cf_oprow *r, int ci, cf_opcase *c);
/* The case's value of the parameter called name (0 when the row has none). */
int cf_opcase_param(const cf_oprow *r, const cf_opcase *c, const char *name);
/* "M=7 N=5 ..." */
void cf_opcase_label(const cf_oprow *r, const cf_opcase *c, char *buf, size_t len);
/* The row's tolerance for this case (scaled by the dot-product length where the row says so). */
double cf_opcase_tol(const cf_oprow *r, const cf_opcase *c);

typedef struct {
    double err, nmse;
    const char *worst;   /* output with the largest err */
    const char *problem; /* static string ("guard overwritten") or NULL */
} cf_opcmp;
/* got against ref over the case's outputs. */
void cf_opcase_compare(const cf_opcase *c, float **got, float **ref, cf_opcmp *res);

/* Case ci of row r on be against the CPU backend cpu: *pass 1 when be's outputs are within the
 * tolerance; *res and *tol say by how much; msg (len bytes) receives a one-line reason on failure.
 * Returns CF_OK when the comparison ran (pass or fail), or the reference's error when the CPU
 * backend itself could not run the case. An op that returns an error on be is a failure, not an
 * error of this function. */
int cf_opcase_check(cf_backend *cpu, cf_backend *be, const cf_oprow *r, int ci, int *pass,
                    cf_opcmp *res, double *tol, char *msg, size_t len);

#endif
