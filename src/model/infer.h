/* clformer: inference with a KV cache on the device (prefill once, then one position per step
 * per layer), for every option of the model family, in fp32 or with int8 weights.
 *
 * The engine holds `slots` sequences; each has a cache of S positions (S <= max_length) per
 * layer for K and V, only the KVH key/value heads (GQA caches no copies). A step appends Tq tokens
 * to each of B consecutive slots and returns the logits of each slot's last new token. Rows of a
 * step never read each other's cache, so a sequence's logits do not depend on what else is in the
 * batch.
 *
 * RoPE: keys are stored rotated at their position in the cache. When a RoPE sequence fills its S
 * positions, cf_infer_slide drops its oldest position(s): the cache rows move down and every kept
 * key is rotated back by the same number of positions (RoPE's rotations compose, so a key at cache
 * position j is always rotated by j; attention scores depend only on the distance between query
 * and key, which the slide keeps). A key is re-rotated at most S times before it leaves the
 * window. Learned positions (GPT-2) cannot slide: a full sequence is finished ("length").
 *
 * Masks: the row at cache position p sees cache positions lo..p, as the model's training forward
 * does (docs/attention.md): lo = max(p - W + 1 with attention_window W > 0, the cache position
 * where the row's document starts with doc_mask and an end-of-text id set by
 * cf_infer_set_doc_eot). The engine keeps each slot's current document start: an end-of-text
 * token belongs to the document it closes, the token after it starts the next one. A slide moves
 * the window and the document start down with the cache (a start that leaves the cache becomes
 * 0); a reset starts a new document at 0.
 *
 * INT8 (weight-only): every linear layer of cf_model_linears (qkv, attn_proj, fc, fc_proj, the LM
 * head) and the embeddings (wte, wpe) are stored as int8 with one f32 scale per row, symmetric:
 * w ~= scale * q, scale = max|w_row| / 127, q = round(w / scale). Products go through gemm_q8
 * (dequantised in the kernel), the embedding lookups through embed_q8 (the rows read are
 * dequantised); a row of wte is both a token's embedding and an output channel of a tied head, so
 * one int8 wte serves both. The engine keeps no f32 copy of any of them; norms and biases stay
 * f32. */
#ifndef CF_MODEL_INFER_H
#define CF_MODEL_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "clformer/config.h"
#include "model/gpt.h"

typedef struct cf_infer cf_infer;

typedef struct {
    int slots;    /* sequences held at once (the largest batch) */
    int S;        /* cache positions per sequence, 1..max_length (0 = max_length) */
    int max_rows; /* largest B*Tq of one step (prefill chunks); 0 = max(slots, S) */
    int int8;     /* linear weights as int8 (gemm_q8) */
} cf_infer_opts;

/* Allocates the weights (uninitialised until set), the caches and the step buffers. */
int cf_infer_create(cf_backend *be, const cf_config *cfg, const cf_infer_opts *o, cf_infer **out);
void cf_infer_free(cf_infer *inf);

/* Weights from host floats in the model's layout (cf_model_layout; cf_model_get_params gives
 * them). In int8 mode the linear weights are quantised here. */
int cf_infer_set_params(cf_infer *inf, const float *host);
/* Load a checkpoint (fp32: quantised on load in int8 mode) or a file written by
 * cf_quantize_write (needs int8 mode). */
int cf_infer_load(cf_infer *inf, const char *path);

/* Whether the file at path is an int8 model written by cf_quantize_write (*int8 = 0 or 1). */
int cf_infer_file_is_int8(const char *path, int *int8);

/* Forget slot s's sequence (its position becomes 0). */
void cf_infer_reset(cf_infer *inf, int slot);
/* doc_mask: the end-of-text token id of the model's tokenizer (as cf_model_set_doc_eot): from
 * the next step on, each row attends only within its document. eot < 0, or a config without
 * doc_mask: no document mask (the window, if any, still applies). Tokens already in a slot's
 * cache are not rescanned: set it before the first step. */
void cf_infer_set_doc_eot(cf_infer *inf, int32_t eot);
/* Positions slot s holds. */
int cf_infer_pos(const cf_infer *inf, int slot);
/* Cache positions per sequence. */
int cf_infer_capacity(const cf_infer *inf);
int cf_infer_slots(const cf_infer *inf);
int cf_infer_max_rows(const cf_infer *inf);

/* Append Tq tokens to each of slots slot0 .. slot0+B-1 (tokens (B,Tq) row-major); logits (B,V)
 * receives, for each slot, the logits after its last new token, with the config's soft-cap
 * applied (NULL: not downloaded). B*Tq <= max_rows; every slot must have room for Tq more
 * positions (cf_infer_slide first, or stop). */
int cf_infer_step(cf_infer *inf, int slot0, int B, int Tq, const int32_t *tokens, float *logits);
/* As cf_infer_step, but logits (B*Tq, V) receives the logits of every new row (evaluation). */
int cf_infer_step_all(cf_infer *inf, int slot0, int B, int Tq, const int32_t *tokens,
                      float *logits);
/* Append n tokens to one slot in chunks of at most max_rows (prefill); logits as for a step. */
int cf_infer_prefill(cf_infer *inf, int slot, const int32_t *tokens, int n, float *logits);
/* RoPE only: drop slot s's d oldest positions (see above). CF_ERR_INVALID with learned
 * positions. */
int cf_infer_slide(cf_infer *inf, int slot, int d);

/* Device bytes of the weights (f32 + int8 + scales) and of the caches. */
size_t cf_infer_weight_bytes(const cf_infer *inf);
size_t cf_infer_cache_bytes(const cf_infer *inf);

/* ---- int8 weights ----------------------------------------------------------------------------- */

/* Symmetric per-row quantisation of w (rows, cols): scale[r] = max|w[r,:]| / 127 (0 for a zero
 * row), q = round(w / scale) in [-127, 127]. */
void cf_quantize_rows(const float *w, int64_t rows, int64_t cols, int8_t *q, float *scale);

/* Write the int8 model of host weights (model layout) to path as safetensors: each linear weight
 * <name> as "<name>.q8" (I8, the parameter's shape) and "<name>.scale" (F32, one per output row:
 * (NB, OC) or (OC)); the other tensors F32 under their checkpoint names; the metadata of the
 * source checkpoint src (config, tokenizer, step) plus "quantization" = "int8" and a description.
 * *fp32_bytes and *int8_bytes (optional) receive the weight bytes of both forms. */
int cf_quantize_write(const char *path, const char *src, const cf_config *cfg, const float *host,
                      size_t *fp32_bytes, size_t *int8_bytes);

#endif
