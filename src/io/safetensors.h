/* clformer: safetensors reader and writer (checkpoints, test fixtures).
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON, then the raw tensor bytes.
 * The JSON maps tensor name -> {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative
 * to the first byte after the header) plus an optional "__metadata__" object of string -> string.
 * The writer pads the header with spaces to a multiple of 8 bytes so the data is 8-byte aligned,
 * and writes through a temporary file that is fsync'ed and renamed over the target, so a crash
 * during a save leaves the previous file intact. Data is little-endian (the host order here). */
#ifndef CF_SAFETENSORS_H
#define CF_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "clformer/common.h"

#define CF_ST_MAX_DIMS 8

typedef struct {
    const char *name;
    const char *dtype; /* "F32", "I32", "F16", "BF16", "F64", "I64", "I16", "I8", "U8", "BOOL" */
    int ndim;          /* 0..CF_ST_MAX_DIMS; 0 is a scalar (one element) */
    int64_t shape[CF_ST_MAX_DIMS];
    const void *data; /* writer: the bytes to store; reader: points into the open file's memory */
    size_t nbytes;    /* product(shape) * element size */
} cf_st_tensor;

/* Element size in bytes of a dtype name, 0 if unknown. */
size_t cf_st_dtype_size(const char *dtype);

/* Write n tensors and nmeta metadata pairs to path atomically (temp file <path>.<pid>.tmp, fsync,
 * rename, fsync of the directory). Tensor data is streamed, so no buffer of the whole file is
 * built. Stale temp files left by an earlier crashed save of the same path are removed after a
 * successful save.
 * Test hook: with the environment variable CF_FAULT_SAVE_CRASH=1 the writer stops after half of
 * the temp file, leaves it behind as a crash would, and returns CF_ERR_IO without renaming. */
int cf_st_write(const char *path, const cf_st_tensor *tensors, int n, const char *const *meta_keys,
                const char *const *meta_vals, int nmeta);

typedef struct cf_st_file cf_st_file;

/* Open and validate: file size, header length, JSON, dtypes, shapes (product * element size equals
 * the byte span), offsets in range, sorted spans tiling the data exactly (no overlap, no gap, no
 * trailing bytes), metadata strings. Errors are one line naming the file and what is wrong.
 * `kind` is the noun used in messages and decides the advice ("checkpoint" -> use an earlier
 * checkpoint; anything else -> regenerate the file); cf_st_open uses "checkpoint". */
int cf_st_open(const char *path, cf_st_file **out);
int cf_st_open_kind(const char *path, const char *kind, cf_st_file **out);

int cf_st_count(const cf_st_file *f);
const cf_st_tensor *cf_st_get(const cf_st_file *f, int i); /* header order; NULL if out of range */
const cf_st_tensor *cf_st_find(const cf_st_file *f, const char *name); /* NULL if absent */
const char *cf_st_meta(const cf_st_file *f, const char *key);           /* NULL if absent */
int cf_st_meta_count(const cf_st_file *f);
const char *cf_st_meta_key(const cf_st_file *f, int i); /* NULL if out of range */
const char *cf_st_path(const cf_st_file *f);
void cf_st_close(cf_st_file *f); /* NULL is fine; invalidates every tensor's data pointer */

/* Convenience for loaders: find `name`, check dtype and element count, and return it; logs a
 * one-line error naming the file and tensor otherwise (CF_ERR_NOT_FOUND / CF_ERR_FORMAT). */
int cf_st_expect(const cf_st_file *f, const char *name, const char *dtype, size_t numel,
                 const cf_st_tensor **out);

#endif
