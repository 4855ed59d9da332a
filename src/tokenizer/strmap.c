/* clformer: byte-string -> uint64 hash map (open addressing, keys in one arena), for word counts,
 * vocabularies and encode caches. */
#include "tokenizer/strmap.h"

#include <stdlib.h>
#include <string.h>

#include "clformer/common.h"

/* Up to 8 bytes as a zero-padded little-endian word, without a variable-length memcpy: two
 * overlapping loads whose common bytes agree. */
static inline uint64_t load_short(const uint8_t *p, size_t len) {
    if (len >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + len - 4, 4);
        return (uint64_t)lo | ((uint64_t)hi << (8 * (len - 4)));
    }
    if (len == 0) return 0;
    return (uint64_t)p[0] | ((uint64_t)p[len / 2] << (8 * (len / 2))) |
           ((uint64_t)p[len - 1] << (8 * (len - 1)));
}

static inline uint64_t mix64(uint64_t h) {
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ull;
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ull;
    h ^= h >> 32;
    return h;
}

uint64_t cf_strmap_hash(const void *key, size_t len) {
    const uint8_t *p = key;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)len * 0xC2B2AE3D27D4EB4Full);
    while (len > 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0x9FB21C651E98DF25ull;
        h ^= h >> 29;
        p += 8;
        len -= 8;
    }
    h = mix64((h ^ load_short(p, len)) * 0x9FB21C651E98DF25ull);
    return h ? h : 1;
}

/* Whether slot s holds key (hash already equal). */
static inline int key_equal(const cf_strmap *m, const cf_strmap_slot *s, const void *key,
                            size_t len) {
    if (s->len != len) return 0;
    if (len <= CF_STRMAP_INLINE) return s->key.word == load_short(key, len);
    return memcmp(m->arena + s->key.off, key, len) == 0;
}

int cf_strmap_init(cf_strmap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    size_t cap = 64;
    while (cap < expected * 2) cap <<= 1;
    m->slots = calloc(cap, sizeof *m->slots);
    if (!m->slots) return CF_ERR_NOMEM;
    m->cap = cap;
    return CF_OK;
}

void cf_strmap_free(cf_strmap *m) {
    free(m->slots);
    free(m->arena);
    memset(m, 0, sizeof *m);
}

void cf_strmap_clear(cf_strmap *m) {
    memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->count = 0;
    m->arena_len = 0;
}

size_t cf_strmap_bytes(const cf_strmap *m) { return m->cap * sizeof *m->slots + m->arena_cap; }

static int grow(cf_strmap *m) {
    size_t ncap = m->cap * 2;
    cf_strmap_slot *ns = calloc(ncap, sizeof *ns);
    if (!ns) return CF_ERR_NOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].hash) continue;
        size_t j = m->slots[i].hash & (ncap - 1);
        while (ns[j].hash) j = (j + 1) & (ncap - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return CF_OK;
}

uint64_t *cf_strmap_find(const cf_strmap *m, const void *key, size_t len, uint64_t hash) {
    size_t j = hash & (m->cap - 1);
    for (;;) {
        const cf_strmap_slot *s = &m->slots[j];
        if (!s->hash) return NULL;
        if (s->hash == hash && key_equal(m, s, key, len)) return (uint64_t *)&s->val;
        j = (j + 1) & (m->cap - 1);
    }
}

int cf_strmap_upsert(cf_strmap *m, const void *key, size_t len, uint64_t hash, uint64_t **val) {
    size_t j = hash & (m->cap - 1);
    for (;;) {
        cf_strmap_slot *s = &m->slots[j];
        if (!s->hash) break;
        if (s->hash == hash && key_equal(m, s, key, len)) {
            *val = &s->val;
            return 0;
        }
        j = (j + 1) & (m->cap - 1);
    }
    /* absent: keep the load factor under 1/2, then insert */
    if ((m->count + 1) * 2 > m->cap) {
        int rc = grow(m);
        if (rc < 0) return rc;
        j = hash & (m->cap - 1);
        while (m->slots[j].hash) j = (j + 1) & (m->cap - 1);
    }
    cf_strmap_slot *s = &m->slots[j];
    if (len <= CF_STRMAP_INLINE) {
        s->key.word = load_short(key, len);
    } else {
        if (m->arena_len + len > m->arena_cap) {
            size_t ncap = m->arena_cap ? m->arena_cap : 4096;
            while (ncap < m->arena_len + len) ncap *= 2;
            uint8_t *na = realloc(m->arena, ncap);
            if (!na) return CF_ERR_NOMEM;
            m->arena = na;
            m->arena_cap = ncap;
        }
        memcpy(m->arena + m->arena_len, key, len);
        s->key.off = m->arena_len;
        m->arena_len += len;
    }
    s->hash = hash;
    s->len = len;
    s->val = 0;
    m->count++;
    *val = &s->val;
    return 1;
}
