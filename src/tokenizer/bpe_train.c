/* clformer: byte-level BPE training: parallel word counting over a streamed corpus, then merges
 * with incrementally maintained pair counts and a lazy max-heap. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "clformer/common.h"
#include "tokenizer/corpus.h"
#include "tokenizer/progress.h"
#include "tokenizer/tok_internal.h"

/* Pre-tokens longer than this are counted as pieces of at most this many bytes (cut between UTF-8
 * characters), which keeps the merge phase linear in pathological inputs (huge runs of one class).
 */
#define CF_TRAIN_MAX_WORD 256
/* Bytes read per piece while counting. */
#define CF_TRAIN_CHUNK ((size_t)8 << 20)

/* ---- counting
 * ------------------------------------------------------------------------------------ */

static int count_word(cf_strmap *m, const uint8_t *w, size_t n) {
    while (n > 0) {
        size_t k = n;
        if (k > CF_TRAIN_MAX_WORD) {
            k = CF_TRAIN_MAX_WORD;
            while (k > 1 && (w[k] & 0xC0) == 0x80) k--; /* do not split a character */
        }
        uint64_t *v;
        if (cf_strmap_upsert(m, w, k, cf_strmap_hash(w, k), &v) < 0) return CF_ERR_NOMEM;
        (*v)++;
        w += k;
        n -= k;
    }
    return CF_OK;
}

/* Count the pre-tokens of s[0..n) into m (special tokens are skipped). */
static int count_text(cf_strmap *m, const cf_specials *sp, const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        int which = -1;
        size_t e = cf_specials_find(sp, s, n, i, &which);
        while (i < e) {
            size_t j = cf_pretok_next(s, e, i);
            CF_TRY(count_word(m, s + i, j - i));
            i = j;
        }
        if (which >= 0) i = e + sp->len[which];
    }
    return CF_OK;
}

/* Text waiting to be counted: copies of file pieces, cut into segments of about CF_TRAIN_SEGMENT
 * bytes at exact points, counted in one parallel region per CF_TRAIN_BATCH bytes (few regions: an
 * idle OpenMP thread spins between them). */
#define CF_TRAIN_SEGMENT ((size_t)1 << 20)
#define CF_TRAIN_BATCH ((size_t)16 << 20)

typedef struct {
    const uint8_t *p;
    size_t n;
} segment;

typedef struct {
    uint8_t **blocks;
    size_t nblocks, cap_blocks;
    segment *seg;
    size_t nseg, cap_seg;
    size_t bytes;
} count_batch;

static int batch_add(count_batch *b, const cf_specials *sp, const uint8_t *s, size_t n) {
    if (b->nblocks == b->cap_blocks) {
        size_t c = b->cap_blocks ? b->cap_blocks * 2 : 64;
        uint8_t **nb = realloc(b->blocks, c * sizeof *nb);
        if (!nb) return CF_ERR_NOMEM;
        b->blocks = nb;
        b->cap_blocks = c;
    }
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy) return CF_ERR_NOMEM;
    memcpy(copy, s, n);
    b->blocks[b->nblocks++] = copy;
    b->bytes += n;
    size_t pos = 0;
    while (pos < n) {
        size_t end = n;
        if (n - pos > CF_TRAIN_SEGMENT + CF_TRAIN_SEGMENT / 2) {
            size_t c =
                cf_pretok_find_cut(sp, copy, n, pos + CF_TRAIN_SEGMENT, pos + CF_TRAIN_SEGMENT / 2);
            if (c) end = c;
        }
        if (b->nseg == b->cap_seg) {
            size_t c = b->cap_seg ? b->cap_seg * 2 : 256;
            segment *ns = realloc(b->seg, c * sizeof *ns);
            if (!ns) return CF_ERR_NOMEM;
            b->seg = ns;
            b->cap_seg = c;
        }
        b->seg[b->nseg++] = (segment){copy + pos, end - pos};
        pos = end;
    }
    return CF_OK;
}

/* Count every segment, each thread into its own table, and empty the batch. */
static int batch_count(count_batch *b, cf_strmap *maps, int nt, const cf_specials *sp) {
    int rc = CF_OK;
    if (b->nseg) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
        for (size_t k = 0; k < b->nseg; k++) {
            int r = count_text(&maps[omp_get_thread_num()], sp, b->seg[k].p, b->seg[k].n);
            if (r < 0) {
#pragma omp critical(cf_bpe_count_rc)
                rc = r;
            }
        }
    }
    for (size_t k = 0; k < b->nblocks; k++) free(b->blocks[k]);
    b->nblocks = b->nseg = b->bytes = 0;
    return rc;
}

static void batch_free(count_batch *b) {
    for (size_t k = 0; k < b->nblocks; k++) free(b->blocks[k]);
    free(b->blocks);
    free(b->seg);
}

/* ---- merging
 * ------------------------------------------------------------------------------------- */

typedef struct {
    uint32_t *items;
    uint32_t n, cap;
} u32list;

/* Heap entries carry the pair's symbols, so comparisons touch no other memory. */
typedef struct {
    int64_t count;
    uint64_t key; /* a << 32 | b */
} heap_ent;

typedef struct {
    /* words: symbols sym[off[w] .. off[w] + len[w]), weight cnt[w] */
    size_t nw;
    uint64_t *off;
    uint32_t *len;
    uint64_t *cnt;
    uint32_t *sym;
    uint32_t *stamp;
    /* tokens: bytes tb[to[id] .. to[id+1]) */
    uint8_t *tb;
    size_t tb_len, tb_cap;
    uint64_t *to;
    uint32_t ntok, tok_cap;
    cf_strmap tokmap; /* bytes -> id, to reuse an id when a merge rebuilds an existing string */
    /* pairs: key a<<32|b -> index; per pair its count, symbols and the words it may occur in */
    uint64_t *pkey;
    uint32_t *pidx; /* slot -> pair index + 1 (0 empty) */
    size_t pcap;
    int64_t *pcount;
    uint32_t *pa, *pb;
    u32list *pwords;
    uint32_t npairs, pairs_cap;
    heap_ent *heap;
    size_t hn, hcap;
    /* merges in rank order (a, b) */
    uint32_t *merges;
    uint32_t nmerges;
} trainer;

static int pairs_grow(trainer *T) {
    if (T->npairs == T->pairs_cap) {
        uint32_t c = T->pairs_cap ? T->pairs_cap * 2 : 1 << 16;
        int64_t *pc = realloc(T->pcount, c * sizeof *pc);
        if (pc) T->pcount = pc;
        uint32_t *pa = realloc(T->pa, c * sizeof *pa);
        if (pa) T->pa = pa;
        uint32_t *pb = realloc(T->pb, c * sizeof *pb);
        if (pb) T->pb = pb;
        u32list *pw = realloc(T->pwords, c * sizeof *pw);
        if (pw) T->pwords = pw;
        if (!pc || !pa || !pb || !pw) return CF_ERR_NOMEM;
        T->pairs_cap = c;
    }
    if ((size_t)(T->npairs + 1) * 2 > T->pcap) {
        size_t nc = T->pcap ? T->pcap * 2 : 1 << 17;
        uint64_t *nk = calloc(nc, sizeof *nk);
        uint32_t *ni = calloc(nc, sizeof *ni);
        if (!nk || !ni) {
            free(nk);
            free(ni);
            return CF_ERR_NOMEM;
        }
        for (size_t j = 0; j < T->pcap; j++) {
            if (!T->pidx[j]) continue;
            size_t h = (size_t)((T->pkey[j] * 0x9E3779B97F4A7C15ull) >> 32) & (nc - 1);
            while (ni[h]) h = (h + 1) & (nc - 1);
            nk[h] = T->pkey[j];
            ni[h] = T->pidx[j];
        }
        free(T->pkey);
        free(T->pidx);
        T->pkey = nk;
        T->pidx = ni;
        T->pcap = nc;
    }
    return CF_OK;
}

/* Index of pair (a, b), created with count 0 when new; -1 on allocation failure. */
static int64_t pair_get(trainer *T, uint32_t a, uint32_t b) {
    uint64_t key = ((uint64_t)a << 32) | b;
    size_t h = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (T->pcap - 1);
    while (T->pidx[h]) {
        if (T->pkey[h] == key) return T->pidx[h] - 1;
        h = (h + 1) & (T->pcap - 1);
    }
    if (pairs_grow(T) < 0) return -1;
    h = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & (T->pcap - 1);
    while (T->pidx[h]) h = (h + 1) & (T->pcap - 1);
    uint32_t p = T->npairs++;
    T->pkey[h] = key;
    T->pidx[h] = p + 1;
    T->pcount[p] = 0;
    T->pa[p] = a;
    T->pb[p] = b;
    T->pwords[p] = (u32list){0};
    return p;
}

static int list_add(u32list *l, uint32_t w) {
    if (l->n && l->items[l->n - 1] == w) return CF_OK;
    if (l->n == l->cap) {
        uint32_t c = l->cap ? l->cap * 2 : 4;
        uint32_t *ni = realloc(l->items, c * sizeof *ni);
        if (!ni) return CF_ERR_NOMEM;
        l->items = ni;
        l->cap = c;
    }
    l->items[l->n++] = w;
    return CF_OK;
}

/* Max-heap order: larger count first, then the smaller (a, b) — the deterministic tie-break. A
 * 4-ary heap: half the depth of a binary one, and the four children share a cache line or two. */
static inline int heap_before(heap_ent x, heap_ent y) {
    return x.count > y.count || (x.count == y.count && x.key < y.key);
}

static int heap_push(trainer *T, int64_t count, uint32_t pair) {
    if (T->hn == T->hcap) {
        size_t c = T->hcap ? T->hcap * 2 : 1 << 16;
        heap_ent *h = realloc(T->heap, c * sizeof *h);
        if (!h) return CF_ERR_NOMEM;
        T->heap = h;
        T->hcap = c;
    }
    heap_ent x = {count, ((uint64_t)T->pa[pair] << 32) | T->pb[pair]};
    size_t i = T->hn++;
    while (i > 0) {
        size_t p = (i - 1) / 4;
        if (!heap_before(x, T->heap[p])) break;
        T->heap[i] = T->heap[p];
        i = p;
    }
    T->heap[i] = x;
    return CF_OK;
}

static heap_ent heap_pop(trainer *T) {
    heap_ent top = T->heap[0], x = T->heap[--T->hn];
    size_t i = 0, n = T->hn;
    for (;;) {
        size_t c = 4 * i + 1, best = c;
        if (c >= n) break;
        size_t end = c + 4 < n ? c + 4 : n;
        for (size_t k = c + 1; k < end; k++)
            if (heap_before(T->heap[k], T->heap[best])) best = k;
        if (!heap_before(T->heap[best], x)) break;
        T->heap[i] = T->heap[best];
        i = best;
    }
    if (n) T->heap[i] = x;
    return top;
}

/* Append a token made of bytes b1 then the bytes of token b2 (b2 < 0: none), or find the existing
 * token with the same bytes. b1 may point into T->tb: it is read only after the buffer has its
 * final size. */
static int token_add(trainer *T, const uint8_t *b1, size_t n1, int64_t b2, uint32_t *id) {
    size_t n2 = b2 >= 0 ? (size_t)(T->to[b2 + 1] - T->to[b2]) : 0, n = n1 + n2;
    if (T->tb_len + n > T->tb_cap) {
        size_t c = T->tb_cap ? T->tb_cap * 2 : 1 << 16;
        while (c < T->tb_len + n) c *= 2;
        int inside = T->tb && b1 >= T->tb && b1 < T->tb + T->tb_cap;
        size_t rel = inside ? (size_t)(b1 - T->tb) : 0;
        uint8_t *nb = realloc(T->tb, c);
        if (!nb) return CF_ERR_NOMEM;
        T->tb = nb;
        T->tb_cap = c;
        if (inside) b1 = nb + rel;
    }
    uint8_t *dst = T->tb + T->tb_len;
    memcpy(dst, b1, n1);
    if (n2) memcpy(dst + n1, T->tb + T->to[b2], n2);
    uint64_t *v;
    int r = cf_strmap_upsert(&T->tokmap, dst, n, cf_strmap_hash(dst, n), &v);
    if (r < 0) return CF_ERR_NOMEM;
    if (r == 0) {
        *id = (uint32_t)*v;
        return CF_OK;
    }
    if (T->ntok + 2 > T->tok_cap) {
        uint32_t c = T->tok_cap * 2;
        uint64_t *no = realloc(T->to, (size_t)(c + 1) * sizeof *no);
        if (!no) return CF_ERR_NOMEM;
        T->to = no;
        T->tok_cap = c;
    }
    *v = T->ntok;
    *id = T->ntok;
    T->tb_len += n;
    T->ntok++;
    T->to[T->ntok] = T->tb_len;
    return CF_OK;
}

static void trainer_free(trainer *T) {
    free(T->off);
    free(T->len);
    free(T->cnt);
    free(T->sym);
    free(T->stamp);
    free(T->tb);
    free(T->to);
    cf_strmap_free(&T->tokmap);
    free(T->pkey);
    free(T->pidx);
    free(T->pcount);
    free(T->pa);
    free(T->pb);
    if (T->pwords)
        for (uint32_t p = 0; p < T->npairs; p++) free(T->pwords[p].items);
    free(T->pwords);
    free(T->heap);
    free(T->merges);
}

typedef struct {
    const uint8_t *key;
    uint32_t len;
    uint64_t count;
} word_ref;

static int cmp_word(const void *x, const void *y) {
    const word_ref *a = x, *b = y;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->key, b->key, n);
    if (c) return c;
    return (a->len > b->len) - (a->len < b->len);
}

static size_t trainer_bytes(const trainer *T) {
    size_t b = T->nw * (sizeof *T->off + sizeof *T->len + sizeof *T->cnt + sizeof *T->stamp);
    b += T->pcap * (sizeof *T->pkey + sizeof *T->pidx);
    b += (size_t)T->pairs_cap * (sizeof *T->pcount + 2 * sizeof *T->pa + sizeof *T->pwords);
    for (uint32_t p = 0; p < T->npairs; p++) b += (size_t)T->pwords[p].cap * sizeof(uint32_t);
    b += T->hcap * sizeof *T->heap + T->tb_cap + cf_strmap_bytes(&T->tokmap);
    return b;
}

/* Learn merges from the word counts in m until `target` tokens exist (EOT excluded); JSON out. */
static int learn(const cf_strmap *m, uint32_t vocab_size, int progress, char **json,
                 size_t *json_len, cf_bpe_train_stats *st) {
    trainer T = {0};
    int rc = CF_ERR_NOMEM;
    uint32_t target = vocab_size - 1;
    word_ref *words = malloc((m->count ? m->count : 1) * sizeof *words);
    if (!words) goto done;
    size_t nw = 0, nsym = 0;
    uint64_t total_words = 0;
    for (size_t j = 0; j < m->cap; j++) {
        const cf_strmap_slot *s = &m->slots[j];
        if (!s->hash) continue;
        words[nw++] = (word_ref){cf_strmap_key(m, s), (uint32_t)s->len, s->val};
        nsym += s->len;
        total_words += s->val;
    }
    qsort(words, nw, sizeof *words, cmp_word); /* a fixed word order, whatever the table layout */
    if (st) {
        st->distinct_words = nw;
        st->words = total_words;
    }
    T.nw = nw;
    T.off = malloc((nw + 1) * sizeof *T.off);
    T.len = malloc((nw + 1) * sizeof *T.len);
    T.cnt = malloc((nw + 1) * sizeof *T.cnt);
    T.stamp = calloc(nw + 1, sizeof *T.stamp);
    T.sym = malloc((nsym + 1) * sizeof *T.sym);
    T.tok_cap = target + 1 > 512 ? target + 1 : 512;
    T.to = malloc(((size_t)T.tok_cap + 1) * sizeof *T.to);
    T.merges = malloc(2 * (size_t)(target > 256 ? target : 1) * sizeof *T.merges);
    if (!T.off || !T.len || !T.cnt || !T.stamp || !T.sym || !T.to || !T.merges) goto done;
    if (cf_strmap_init(&T.tokmap, target) < 0 || pairs_grow(&T) < 0) goto done;
    /* the 256 byte tokens */
    T.to[0] = 0;
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        uint32_t id;
        if (token_add(&T, &c, 1, -1, &id) < 0) goto done;
    }
    size_t o = 0;
    for (size_t w = 0; w < nw; w++) {
        T.off[w] = o;
        T.len[w] = words[w].len;
        T.cnt[w] = words[w].count;
        for (uint32_t k = 0; k < words[w].len; k++) T.sym[o + k] = words[w].key[k];
        o += words[w].len;
    }
    free(words);
    words = NULL;
    /* initial pair counts */
    for (size_t w = 0; w < nw; w++) {
        const uint32_t *s = T.sym + T.off[w];
        for (uint32_t k = 0; k + 1 < T.len[w]; k++) {
            int64_t p = pair_get(&T, s[k], s[k + 1]);
            if (p < 0 || list_add(&T.pwords[p], (uint32_t)w) < 0) goto done;
            T.pcount[p] += (int64_t)T.cnt[w];
        }
    }
    for (uint32_t p = 0; p < T.npairs; p++)
        if (heap_push(&T, T.pcount[p], p) < 0) goto done;

    cf_progress bar;
    uint32_t want = target > T.ntok ? target - T.ntok : 0;
    if (progress) cf_progress_start(&bar, "merges", want, 0);
    double t0 = cf_time_now();
    uint32_t stamp = 0, *changed = NULL;
    size_t nchanged = 0, changed_cap = 0;
    rc = CF_OK;
    while (T.ntok < target && T.hn > 0) {
        if (cf_interrupted()) {
            rc = CF_ERR_INTERRUPTED;
            break;
        }
        heap_ent top = heap_pop(&T);
        uint32_t p = (uint32_t)pair_get(&T, (uint32_t)(top.key >> 32), (uint32_t)top.key);
        if (top.count != T.pcount[p]) {
            /* stale entry (counts of old pairs only go down): requeue with the true count */
            if (T.pcount[p] > 0 && (rc = heap_push(&T, T.pcount[p], p)) < 0) break;
            continue;
        }
        if (top.count <= 0) break;
        uint32_t a = T.pa[p], b = T.pb[p], z;
        if ((rc = token_add(&T, T.tb + T.to[a], T.to[a + 1] - T.to[a], b, &z)) < 0) break;
        T.merges[2 * T.nmerges] = a;
        T.merges[2 * T.nmerges + 1] = b;
        T.nmerges++;
        stamp++;
        nchanged = 0;
        /* the word list of (a, b) is not appended to below: new pairs all contain z */
        const uint32_t *wl = T.pwords[p].items;
        uint32_t wn = T.pwords[p].n;
        for (uint32_t i = 0; i < wn && rc == CF_OK; i++) {
            uint32_t w = wl[i];
            if (T.stamp[w] == stamp) continue;
            T.stamp[w] = stamp;
            uint32_t *s = T.sym + T.off[w], L = T.len[w], k;
            for (k = 0; k + 1 < L; k++)
                if (s[k] == a && s[k + 1] == b) break;
            if (k + 1 >= L) continue; /* the pair left this word in an earlier merge */
            int64_t c = (int64_t)T.cnt[w];
            for (k = 0; k + 1 < L; k++) T.pcount[pair_get(&T, s[k], s[k + 1])] -= c;
            uint32_t d = 0;
            for (k = 0; k < L; k++) {
                if (k + 1 < L && s[k] == a && s[k + 1] == b) {
                    s[d++] = z;
                    k++;
                } else {
                    s[d++] = s[k];
                }
            }
            T.len[w] = L = d;
            for (k = 0; k + 1 < L; k++) {
                int64_t q = pair_get(&T, s[k], s[k + 1]);
                if (q < 0) {
                    rc = CF_ERR_NOMEM;
                    break;
                }
                T.pcount[q] += c;
                if (s[k] != z && s[k + 1] != z) continue;
                /* pairs with z may gain count: remember them to queue with their final counts */
                if ((rc = list_add(&T.pwords[q], w)) < 0) break;
                if (nchanged == changed_cap) {
                    changed_cap = changed_cap ? changed_cap * 2 : 1024;
                    uint32_t *nc = realloc(changed, changed_cap * sizeof *nc);
                    if (!nc) {
                        rc = CF_ERR_NOMEM;
                        break;
                    }
                    changed = nc;
                }
                changed[nchanged++] = (uint32_t)q;
            }
        }
        for (size_t i = 0; i < nchanged && rc == CF_OK; i++) {
            uint32_t q = changed[i];
            if (T.pcount[q] > 0) rc = heap_push(&T, T.pcount[q], q);
        }
        /* the merged pair is gone everywhere; its word list is no longer needed */
        free(T.pwords[p].items);
        T.pwords[p] = (u32list){0};
        if (progress) cf_progress_update(&bar, T.ntok - 256);
    }
    free(changed);
    if (progress) cf_progress_finish(&bar, T.ntok - 256);
    if (st) {
        st->merge_seconds = cf_time_now() - t0;
        size_t tb = trainer_bytes(&T);
        if (tb > st->peak_table_bytes) st->peak_table_bytes = tb;
    }
    if (rc < 0) goto done;
    if (T.ntok < target)
        CF_WARN("the corpus has no pairs left after %u merges: the tokenizer has %u ids instead of "
                "the %u "
                "asked for; set vocab_size to %u in the config",
                T.nmerges, T.ntok + 1, vocab_size, T.ntok + 1);
    /* <|endoftext|> takes the last id (no merge can build it: pre-tokens never mix letters and '<')
     */
    {
        const uint8_t **tp = malloc(((size_t)T.ntok + 1) * sizeof *tp);
        size_t *tl = malloc(((size_t)T.ntok + 1) * sizeof *tl);
        if (!tp || !tl) {
            free(tp);
            free(tl);
            rc = CF_ERR_NOMEM;
            goto done;
        }
        for (uint32_t i = 0; i < T.ntok; i++) {
            tp[i] = T.tb + T.to[i];
            tl[i] = (size_t)(T.to[i + 1] - T.to[i]);
        }
        tp[T.ntok] = (const uint8_t *)CF_TOKENIZER_EOT;
        tl[T.ntok] = strlen(CF_TOKENIZER_EOT);
        rc = cf_bpe_write_json(tp, tl, T.ntok + 1, T.merges, T.nmerges, (int32_t)T.ntok, json,
                               json_len);
        if (st) {
            st->merges = T.nmerges;
            st->vocab_size = T.ntok + 1;
        }
        free(tp);
        free(tl);
    }
done:
    if (rc == CF_ERR_NOMEM)
        CF_ERROR("out of memory while learning merges (%zu distinct words)", T.nw);
    trainer_free(&T);
    free(words);
    return rc;
}

/* ---- entry points
 * -------------------------------------------------------------------------------- */

static int check_vocab_size(uint32_t v) {
    if (v < 257 || v > (1u << 24)) {
        CF_ERROR("vocab size %u is out of range: it must be at least 257 (256 bytes + %s) and at "
                 "most %u",
                 v, CF_TOKENIZER_EOT, 1u << 24);
        return CF_ERR_INVALID;
    }
    return CF_OK;
}

static void eot_specials(cf_specials *sp) {
    memset(sp, 0, sizeof *sp);
    sp->n = 1;
    sp->str[0] = (const uint8_t *)CF_TOKENIZER_EOT;
    sp->len[0] = strlen(CF_TOKENIZER_EOT);
}

static int maps_new(int nt, cf_strmap **out) {
    cf_strmap *maps = calloc((size_t)nt, sizeof *maps);
    if (!maps) return CF_ERR_NOMEM;
    for (int k = 0; k < nt; k++) {
        if (cf_strmap_init(&maps[k], 1 << 16) < 0) {
            for (int j = 0; j < k; j++) cf_strmap_free(&maps[j]);
            free(maps);
            return CF_ERR_NOMEM;
        }
    }
    *out = maps;
    return CF_OK;
}

/* Fold the per-thread tables into maps[0]. */
static int maps_fold(cf_strmap *maps, int nt) {
    for (int k = 1; k < nt; k++) {
        for (size_t j = 0; j < maps[k].cap; j++) {
            const cf_strmap_slot *s = &maps[k].slots[j];
            if (!s->hash) continue;
            uint64_t *v;
            if (cf_strmap_upsert(&maps[0], cf_strmap_key(&maps[k], s), s->len, s->hash, &v) < 0)
                return CF_ERR_NOMEM;
            *v += s->val;
        }
        cf_strmap_free(&maps[k]);
    }
    return CF_OK;
}

static size_t maps_bytes(const cf_strmap *maps, int nt) {
    size_t b = 0;
    for (int k = 0; k < nt; k++) b += cf_strmap_bytes(&maps[k]);
    return b;
}

static int threads_of(int threads) {
    int nt = threads > 0 ? threads : omp_get_max_threads();
    return nt < 1 ? 1 : (nt > 64 ? 64 : nt);
}

int cf_tokenizer_train_text(const uint8_t *text, size_t n, uint32_t vocab_size, char **json,
                            size_t *len, cf_bpe_train_stats *st) {
    *json = NULL;
    *len = 0;
    CF_TRY(check_vocab_size(vocab_size));
    cf_bpe_train_stats local = {0};
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    cf_specials sp;
    eot_specials(&sp);
    int nt = threads_of(0);
    cf_strmap *maps;
    CF_TRY(maps_new(nt, &maps));
    double t0 = cf_time_now();
    count_batch b = {0};
    int rc = batch_add(&b, &sp, text, n);
    if (rc == CF_OK) rc = batch_count(&b, maps, nt, &sp);
    batch_free(&b);
    st->peak_table_bytes = maps_bytes(maps, nt);
    if (rc == CF_OK) rc = maps_fold(maps, nt);
    st->input_bytes = n;
    st->count_seconds = cf_time_now() - t0;
    if (rc == CF_OK) rc = learn(&maps[0], vocab_size, 0, json, len, st);
    for (int k = 0; k < nt; k++) cf_strmap_free(&maps[k]);
    free(maps);
    return rc;
}

int cf_tokenizer_train(const cf_bpe_train_opts *o, cf_bpe_train_stats *st) {
    CF_TRY(check_vocab_size(o->vocab_size));
    if (!o->out_path || !o->out_path[0]) {
        CF_ERROR("tokenizer train: no output path; pass --out tokenizer.json");
        return CF_ERR_INVALID;
    }
    cf_bpe_train_stats local = {0};
    if (!st) st = &local;
    memset(st, 0, sizeof *st);
    cf_corpus corpus;
    CF_TRY(cf_corpus_collect(&corpus, o->inputs, o->n_inputs));
    cf_specials sp;
    eot_specials(&sp);
    int nt = threads_of(o->threads);
    cf_strmap *maps;
    int rc = maps_new(nt, &maps);
    if (rc < 0) {
        cf_corpus_free(&corpus);
        return rc;
    }
    cf_progress bar;
    if (o->progress) cf_progress_start(&bar, "counting", corpus.total_bytes, 1);
    double t0 = cf_time_now();
    uint64_t done_bytes = 0, skipped = 0;
    count_batch batch = {0};
    for (size_t f = 0; f < corpus.n && rc == CF_OK; f++) {
        cf_chunk_reader r;
        if ((rc = cf_chunk_reader_open(&r, corpus.files[f].path,
                                       o->chunk_bytes ? o->chunk_bytes : CF_TRAIN_CHUNK,
                                       CF_CUT_PRETOK, &sp)) < 0)
            break;
        if (r.binary) {
            CF_DEBUG("skipping binary file '%s'", corpus.files[f].path);
            skipped++;
            done_bytes += corpus.files[f].size;
            cf_chunk_reader_close(&r);
            continue;
        }
        const uint8_t *piece;
        size_t plen;
        int clean, got;
        uint64_t file_done = 0;
        while ((got = cf_chunk_reader_next(&r, &piece, &plen, &clean)) > 0) {
            if ((rc = batch_add(&batch, &sp, piece, plen)) < 0) break;
            if (batch.bytes >= CF_TRAIN_BATCH && (rc = batch_count(&batch, maps, nt, &sp)) < 0)
                break;
            file_done += plen;
            if (o->progress) cf_progress_update(&bar, done_bytes + file_done);
            if (cf_interrupted()) {
                rc = CF_ERR_INTERRUPTED;
                break;
            }
        }
        if (got < 0 && rc == CF_OK) rc = got;
        done_bytes += file_done;
        st->input_bytes += file_done;
        st->files++;
        size_t mb = maps_bytes(maps, nt);
        if (mb > st->peak_table_bytes) st->peak_table_bytes = mb;
        cf_chunk_reader_close(&r);
    }
    if (rc == CF_OK) rc = batch_count(&batch, maps, nt, &sp);
    batch_free(&batch);
    if (o->progress) cf_progress_finish(&bar, done_bytes);
    if (skipped)
        CF_INFO("skipped %llu binary file(s) (NUL bytes in their first 8 KB)",
                (unsigned long long)skipped);
    if (rc == CF_OK) rc = maps_fold(maps, nt);
    st->count_seconds = cf_time_now() - t0;
    if (rc == CF_OK && st->input_bytes == 0) {
        CF_ERROR("tokenizer train: the inputs hold no text (%zu file(s), %llu skipped as binary)",
                 corpus.n, (unsigned long long)skipped);
        rc = CF_ERR_INVALID;
    }
    char *json = NULL;
    size_t jlen = 0;
    if (rc == CF_OK) rc = learn(&maps[0], o->vocab_size, o->progress, &json, &jlen, st);
    for (int k = 0; k < nt; k++) cf_strmap_free(&maps[k]);
    free(maps);
    cf_corpus_free(&corpus);
    if (rc == CF_OK) {
        rc = cf_write_file_atomic(o->out_path, json, jlen);
        if (rc < 0) CF_ERROR("tokenizer train: cannot write '%s'", o->out_path);
    }
    free(json);
    return rc;
}
