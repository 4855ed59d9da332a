/* clformer: byte-string -> uint64 hash map (open addressing, keys in one arena), for word counts,
 * vocabularies and encode caches. */
#ifndef CF_TOKENIZER_STRMAP_H
#define CF_TOKENIZER_STRMAP_H

#include <stddef.h>
#include <stdint.h>

/* Keys of up to 8 bytes live in the slot itself (most words), longer ones in the arena. */
#define CF_STRMAP_INLINE 8

typedef struct {
    uint64_t hash; /* 0 marks an empty slot (real hashes are forced non-zero) */
    uint64_t len;
    union {
        uint64_t off;                    /* len > CF_STRMAP_INLINE: key bytes at arena + off */
        uint8_t bytes[CF_STRMAP_INLINE]; /* len <= CF_STRMAP_INLINE: the key, zero-padded */
        uint64_t word;                   /* the same 8 bytes, little-endian */
    } key;
    uint64_t val;
} cf_strmap_slot;

typedef struct {
    cf_strmap_slot *slots;
    size_t cap;   /* power of two */
    size_t count; /* occupied slots */
    uint8_t *arena;
    size_t arena_len, arena_cap;
} cf_strmap;

int cf_strmap_init(cf_strmap *m, size_t expected);
void cf_strmap_free(cf_strmap *m);
void cf_strmap_clear(cf_strmap *m); /* keeps the memory */
/* Bytes held (slots + arena), for memory bounds. */
size_t cf_strmap_bytes(const cf_strmap *m);

uint64_t cf_strmap_hash(const void *key, size_t len);

/* Find key; inserts it with value 0 when absent. *val points at the value (valid until the next
 * insertion). Returns 1 when inserted, 0 when found, CF_ERR_NOMEM. */
int cf_strmap_upsert(cf_strmap *m, const void *key, size_t len, uint64_t hash, uint64_t **val);
/* The value slot of key, or NULL. */
uint64_t *cf_strmap_find(const cf_strmap *m, const void *key, size_t len, uint64_t hash);

static inline const uint8_t *cf_strmap_key(const cf_strmap *m, const cf_strmap_slot *s) {
    return s->len <= CF_STRMAP_INLINE ? s->key.bytes : m->arena + s->key.off;
}

#endif
