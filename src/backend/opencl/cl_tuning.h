/* clformer: tuning files (configs/tuning/<platform>__<device>.json): the GEMM parameters and kernel
 * work-group sizes that clformer-tune measured for one OpenCL platform, device and driver; their
 * in-memory form, JSON read/write (cJSON), matching against a device and the per-shape lookup.
 * The format is described in docs/tuning.md. */
#ifndef CF_CL_TUNING_H
#define CF_CL_TUNING_H

#include <stddef.h>

#define CF_TUNING_FORMAT "clformer-tuning"
#define CF_TUNING_VERSION 1

/* Kernel families whose work-group size (the LS build macro) is tuned. */
enum cf_tuning_family {
    CF_TUNE_ATTENTION,    /* cl_kernels/attention.cl: causal softmax forward/backward */
    CF_TUNE_LAYERNORM,    /* cl_kernels/layernorm.cl */
    CF_TUNE_CROSSENTROPY, /* cl_kernels/crossentropy.cl: softmax + cross-entropy */
    CF_TUNE_ADAMW,        /* cl_kernels/adamw.cl */
    CF_TUNE_FAMILIES
};
const char *cf_tuning_family_name(int family); /* "attention", "layernorm", ... */
int cf_tuning_family_from_name(const char *name); /* -1 when unknown */

/* Which GEMM runs a shape: clformer's tiled kernel with the entry's parameters, CLBlast, or
 * "fast": the register-blocked kernel of cl_gemm_fast.c with the entry's fast choice (any size, on
 * devices where that kernel applies); an entry without a fast choice (older files) leaves the shape
 * to whatever the backend picks without a tuning file (on GPUs the register-blocked kernel with its
 * built-in rule for large products). */
enum cf_tuning_path { CF_TUNING_NATIVE = 0, CF_TUNING_CLBLAST = 1, CF_TUNING_FAST = 2 };

/* The register-blocked kernel's variant and split for a shape: the fields of
 * cf_cl_gemm_fast_choice (cl_gemm_fast.h), kept apart so this header needs no OpenCL. rm 0 = none
 * recorded (the built-in rule's choice). */
typedef struct cf_tuning_fast {
    int rm, rn; /* outputs per work-item along m and n (4 or 8) */
    int bk;     /* K depth of a local-memory slice (8 or 16; 32 in the bf16 / fp16 tensor-core
                 * form) */
    int wg;     /* work-group side (8 or 16) */
    int split;  /* K slices (1..64) */
} cf_tuning_fast;

/* One measured GEMM shape: C(M,N) = op(A) op(B), row-major, op = transpose when ta/tb. */
typedef struct cf_tuning_gemm {
    char label[48];             /* where the shape comes from: "qkv.fwd", "square 1024", ... */
    int M, N, K, ta, tb;        /* the shape measured */
    int tile, wpt, tk, vw, pad; /* the native kernel's best parameters (see cl_kernels/gemm.cl) */
    int path;                   /* enum cf_tuning_path: the fastest of the measured paths */
    double gflops_tuned;        /* native kernel with the parameters above */
    double gflops_rule;         /* native kernel with the built-in rule's parameters */
    double gflops_clblast;      /* CLBlast; 0 when not measured (no CLBlast, or it failed) */
    double gflops_fast;         /* the register-blocked kernel with the fast choice below (older
                                 * files: with the rule's choice, where the untuned backend runs
                                 * it); 0 = not measured */
    double gflops_fast_rule;    /* the register-blocked kernel with the rule's choice, where the
                                 * untuned backend runs it for this shape; 0 = it does not */
    cf_tuning_fast fast;        /* the register-blocked kernel's measured best choice (file:
                                 * "fast_choice"); fast.rm 0 = none: the rule's */
    int candidates;             /* native parameter sets measured */
    int rejected;               /* of which gave wrong results (checked against the CPU backend) */
    char precision[8];          /* the run's precision it was measured under: "fp32" (also an
                                 * entry without the field, and "" here), "tf32" (the register-
                                 * blocked kernel on TF32 tensor cores), "bf16", "fp16"; applied
                                 * only to runs of that precision */
} cf_tuning_gemm;

/* The work-group size chosen for one kernel family; ls 0 = not tuned (keep the default). */
typedef struct cf_tuning_wg {
    int ls;
    int default_ls;    /* the backend's default when measured */
    double us_tuned;   /* time of the family's ops (microseconds) with ls */
    double us_default; /* ... with default_ls */
} cf_tuning_wg;

typedef struct cf_tuning {
    /* the key: a file applies only to this platform, device and driver */
    char platform[256], device[256], driver[256];
    char device_version[256]; /* CL_DEVICE_VERSION, informative */
    char created[40];         /* UTC, ISO 8601 */
    char tool[64];            /* "clformer-tune 0.1.0" */
    char config[256];         /* the config whose shapes were measured ("" = squares only) */
    int quick;                /* measured with --quick */
    cf_tuning_gemm *gemm;
    int n_gemm, cap_gemm;
    cf_tuning_wg wg[CF_TUNE_FAMILIES];
    char path[1024]; /* the file it was loaded from ("" when built in memory) */
} cf_tuning;

/* An empty tuning for this key. */
void cf_tuning_init(cf_tuning *t, const char *platform, const char *device, const char *driver);
void cf_tuning_free(cf_tuning *t); /* frees the entries; t itself is the caller's */

/* The names an entry's "precision" may have; an entry's precision ("" = "fp32"). */
int cf_tuning_precision_known(const char *name);
const char *cf_tuning_entry_precision(const cf_tuning_gemm *g);

/* Add an entry, or replace the entry of the same shape (M, N, K, ta, tb) and precision. */
int cf_tuning_set_gemm(cf_tuning *t, const cf_tuning_gemm *g);

/* JSON text of the tuning (malloc'ed, NULL when out of memory). */
char *cf_tuning_to_json(const cf_tuning *t);
/* Parse and validate JSON text into t (initialised here; free with cf_tuning_free also on
 * error). origin names the file in messages. On error returns CF_ERR_FORMAT (or CF_ERR_NOMEM)
 * with a one-line reason naming the field in why, and logs nothing. */
int cf_tuning_parse(const char *text, const char *origin, cf_tuning *t, char *why, size_t why_len);
/* Read and parse a file (CF_ERR_IO / CF_ERR_NOT_FOUND when unreadable / missing); sets t->path. */
int cf_tuning_load(const char *path, cf_tuning *t, char *why, size_t why_len);
/* Write atomically (temp file + rename), creating the directory. Logs its errors. */
int cf_tuning_save(const cf_tuning *t, const char *path);

/* Does the tuning belong to this platform, device and driver? */
enum cf_tuning_match {
    CF_TUNING_MATCH = 0,
    CF_TUNING_OTHER_DEVICE = 1, /* platform or device name differ */
    CF_TUNING_STALE = 2,        /* same device, another driver version */
};
int cf_tuning_match(const cf_tuning *t, const char *platform, const char *device,
                    const char *driver, char *why, size_t why_len);

/* Shape buckets: each dimension rounded to the nearest power of two (in log2), plus the
 * transposes, e.g. "nt:4096x1024x512". */
void cf_tuning_bucket(int M, int N, int K, int ta, int tb, char *out, size_t len);
/* The entry for a shape: the entry of exactly this shape, else the nearest entry (in log2 of the
 * dimensions) of the same bucket, else NULL. *exact (may be NULL) tells which. */
const cf_tuning_gemm *cf_tuning_lookup(const cf_tuning *t, int M, int N, int K, int ta, int tb,
                                       int *exact);
/* The same among the entries of one precision only (NULL: any, as cf_tuning_lookup). */
const cf_tuning_gemm *cf_tuning_lookup_precision(const cf_tuning *t, const char *precision, int M,
                                                 int N, int K, int ta, int tb, int *exact);
/* Drop the entries of every precision other than `precision` (a run applies only the entries
 * measured under its own); returns how many were dropped. Work-group sizes stay: the kernels they
 * size run in fp32 whatever the GEMMs' precision. */
int cf_tuning_keep_precision(cf_tuning *t, const char *precision);

/* File name for a device: "<platform>__<device>.json", lower case, runs of other characters than
 * letters and digits turned into '-'. */
void cf_tuning_file_name(const char *platform, const char *device, char *out, size_t len);
/* Where clformer looks for the file, in order: `named` (cf_backend_options.tuning: a file, or
 * "off"), then ./configs/tuning/<name>, then <source tree>/configs/tuning/<name>. Fills up to max
 * paths and returns their number (0 when named is "off" or "none"); *from_env is 1 when the single
 * path is the named file. named NULL or "" = look the file up. */
int cf_tuning_search_paths(const char *named, const char *platform, const char *device,
                           char paths[][1024], int max, int *from_env);
/* Directory the tuner writes to by default: ./configs/tuning when it exists, else the source
 * tree's configs/tuning. */
void cf_tuning_default_dir(char *out, size_t len);

#endif
