/* clformer test: the OpenCL encoder (token + position embedding) bit for bit. The forward is one
 * add per element and the token-embedding gradient adds the rows of each token in position order,
 * as the CPU backend does, so both must equal the CPU backend's results exactly, not within a
 * tolerance; the position-embedding gradient (a column sum split over the device) is compared
 * with the normalised error. Token patterns: random ids, one id at 3 of 4 positions (a run much
 * longer than the batch of rows encoder_backward_wte loads at once and than a block of slots),
 * every position the same id, distinct ids in descending order, a skewed (Zipf-like) mix; sizes
 * with B*T not a multiple of the work-group size or of encoder_rank's tile, C not a multiple of
 * 4 and wider than one work-group of 4-channel items. Ids outside the table (negative, V,
 * INT_MAX, INT_MIN) are clamped into it by contract (backend.h): checked against the CPU backend
 * and a host loop with clamped ids, with a sentinel tensor after wte and dwte that must stay
 * unread and unchanged. A second backward from the same start must give the same bits.
 *   test_cl_encoder [--small] [--device SPEC]
 * --small: small shapes only (for oclgrind, see tests/cli_oclgrind_encoder.sh). */
#include "test_cl_common.h"

#include <limits.h>

enum { TOK_RANDOM, TOK_HEAVY, TOK_SAME, TOK_DESCENDING, TOK_SKEWED };
static const char *pattern_name[] = {"random", "heavy", "same", "descending", "skewed"};

/* tok(n): ids in [0, V) following the pattern */
static void fill_tokens(int *tok, int n, int V, int pattern) {
    for (int i = 0; i < n; i++) {
        uint32_t r = cf_rng_u32(&rng);
        switch (pattern) {
        case TOK_HEAVY: tok[i] = (r % 4 != 0) ? V / 2 : (int)((r >> 8) % (uint32_t)V); break;
        case TOK_SAME: tok[i] = V - 1; break;
        case TOK_DESCENDING: tok[i] = (int)((size_t)(n - 1 - i) * (size_t)V / (size_t)n); break;
        case TOK_SKEWED: {
            float u = cf_rng_uniform(&rng);
            tok[i] = (int)((float)V * u * u * u);
            if (tok[i] >= V) tok[i] = V - 1;
            break;
        }
        default: tok[i] = (int)(r % (uint32_t)V); break;
        }
    }
    if (pattern == TOK_RANDOM) tok[0] = tok[n - 1] = V - 1; /* the last row of the table */
}

/* whole buffers (guards included) of the pair, downloaded from both backends */
static void download_both(pair p, float *gpu, float *cpu) {
    size_t total = p.n + 2 * PAD;
    TCL_OK(cf_be_download(GPU, gpu, cf_view_f32(p.g, 0), total * 4));
    TCL_OK(cf_be_download(CPU, cpu, cf_view_f32(p.c, 0), total * 4));
}

/* index of the first element whose bits differ, or -1 (two NaNs count as equal whatever their
 * payloads: the forward's NaN for a token outside the table comes from the device's NAN) */
static long first_diff(const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], 4) != 0 && !(isnan(a[i]) && isnan(b[i]))) return (long)i;
    return -1;
}

/* the OpenCL result of p equals the CPU backend's bit for bit, guards included */
static void check_exact(const char *what, pair p) {
    size_t total = p.n + 2 * PAD;
    float *a = tcl_malloc(total * 4), *b = tcl_malloc(total * 4);
    download_both(p, a, b);
    long d = first_diff(a, b, total);
    if (d < 0)
        expect(1, "%s: %zu elements bit-identical to the CPU backend", what, p.n);
    else
        expect(0, "%s: element %ld (%s) is %.9g on OpenCL, %.9g on the CPU backend", what,
               d - PAD, d < PAD || d >= (long)(PAD + p.n) ? "a guard" : "inside", a[d], b[d]);
    free(a);
    free(b);
}

static void test_vs_cpu(int B, int T, int C, int Vocab, int pattern) {
    const int n = B * T;
    int *tok = tcl_malloc((size_t)n * 4);
    fill_tokens(tok, n, Vocab, pattern);
    pair tokens = pair_new((size_t)n, tok, 0.0f);
    pair wte = pair_rand((size_t)Vocab * C, 1.0f), wpe = pair_rand((size_t)T * C, 1.0f);
    pair out = pair_rand((size_t)n * C, 1.0f);
    char what[160];
    snprintf(what, sizeof what, "encoder_forward B=%d T=%d C=%d V=%d %s", B, T, C, Vocab,
             pattern_name[pattern]);
    BOTH(cf_be_encoder_forward(be, V(out), VI(tokens), V(wte), V(wpe), B, T, C, Vocab));
    check_exact(what, out);

    pair dwte = pair_rand((size_t)Vocab * C, 1.0f), dwpe = pair_rand((size_t)T * C, 1.0f);
    pair dout = pair_rand((size_t)n * C, 1.0f);
    const size_t total = dwte.n + 2 * PAD;
    float *start = tcl_malloc(total * 4), *cpu = tcl_malloc(total * 4);
    download_both(dwte, start, cpu); /* the starting gradient (the same on both sides) */
    BOTH(cf_be_encoder_backward(be, V(dwte), V(dwpe), V(dout), VI(tokens), B, T, C, Vocab));
    snprintf(what, sizeof what, "encoder_backward dwte B=%d T=%d C=%d V=%d %s", B, T, C, Vocab,
             pattern_name[pattern]);
    check_exact(what, dwte);
    snprintf(what, sizeof what, "encoder_backward dwpe B=%d T=%d C=%d", B, T, C);
    check(what, dwpe, 1e-6);

    /* a second run from the same start: the same bits */
    float *first = tcl_malloc(total * 4), *second = tcl_malloc(total * 4);
    TCL_OK(cf_be_download(GPU, first, cf_view_f32(dwte.g, 0), total * 4));
    TCL_OK(cf_be_upload(GPU, cf_view_f32(dwte.g, 0), start, total * 4));
    TCL_OK(cf_be_encoder_backward(GPU, cf_view_f32(dwte.g, PAD), cf_view_f32(dwpe.g, PAD),
                                  cf_view_f32(dout.g, PAD), cf_view_i32(tokens.g, PAD), B, T, C,
                                  Vocab));
    TCL_OK(cf_be_download(GPU, second, cf_view_f32(dwte.g, 0), total * 4));
    long d = first_diff(first, second, total);
    expect(d < 0, "encoder_backward dwte B=%d T=%d C=%d %s: bit-identical run to run%s", B, T, C,
           pattern_name[pattern], d < 0 ? "" : " (differs)");
    free(start), free(cpu), free(first), free(second), free(tok);
    pair_free(tokens), pair_free(wte), pair_free(wpe), pair_free(out);
    pair_free(dwte), pair_free(dwpe), pair_free(dout);
}

/* Tokens outside 0..Vocab-1 are clamped into the table (backend.h), on both backends: wte(V,C)
 * and dwte(V,C) each have a sentinel tensor right after them in the same buffer (as wpe and qkv_w
 * follow wte among the parameters), which no id may read or change. Checked against a host loop
 * in (b, t) order with clamped ids, and OpenCL against the CPU backend bit for bit. */
static void test_bad_tokens(int B, int T, int C, int Vocab) {
    const int n = B * T;
    int *tok = tcl_malloc((size_t)n * 4);
    fill_tokens(tok, n, Vocab, TOK_RANDOM);
    const int bad[] = {-1, Vocab, INT_MAX, INT_MIN, Vocab + 7, -Vocab};
    const int nbad = (int)(sizeof bad / sizeof bad[0]);
    for (int k = 0; k < 2 * nbad && k < n / 2; k++) tok[(size_t)k * 7 % (size_t)n] = bad[k % nbad];
    /* the tables: V rows, then a sentinel of 3 rows */
    const size_t nw = (size_t)Vocab * C, ns = 3 * (size_t)C, np = (size_t)T * C, nd = (size_t)n * C;
    float *h_wte = tcl_malloc((nw + ns) * 4), *h_wpe = tcl_malloc(np * 4);
    float *h_dout = tcl_malloc(nd * 4), *h_dwte = tcl_malloc((nw + ns) * 4);
    float *h_dwpe = tcl_malloc(np * 4);
    tcl_rand(&rng, h_wte, nw, 1.0f);
    tcl_rand(&rng, h_wpe, np, 1.0f);
    tcl_rand(&rng, h_dout, nd, 1.0f);
    tcl_rand(&rng, h_dwte, nw, 1.0f);
    tcl_rand(&rng, h_dwpe, np, 1.0f);
    for (size_t i = 0; i < ns; i++) h_wte[nw + i] = h_dwte[nw + i] = 1e6f + (float)i;
    pair tokens = pair_new((size_t)n, tok, 0.0f), wte = pair_new(nw + ns, h_wte, 0.0f);
    pair wpe = pair_new(np, h_wpe, 0.0f), out = pair_rand(nd, 1.0f);
    pair dwte = pair_new(nw + ns, h_dwte, 0.0f), dwpe = pair_new(np, h_dwpe, 0.0f);
    pair dout = pair_new(nd, h_dout, 0.0f);
    char what[160];
    BOTH(cf_be_encoder_forward(be, V(out), VI(tokens), V(wte), V(wpe), B, T, C, Vocab));
    BOTH(cf_be_encoder_backward(be, V(dwte), V(dwpe), V(dout), VI(tokens), B, T, C, Vocab));
    snprintf(what, sizeof what, "encoder_forward B=%d T=%d C=%d V=%d ids outside the table", B, T,
             C, Vocab);
    check_exact(what, out);
    snprintf(what, sizeof what, "encoder_backward dwte+sentinel B=%d T=%d C=%d V=%d ids outside", B,
             T, C, Vocab);
    check_exact(what, dwte);

    /* host reference: the same loops as the CPU backend, ids clamped into 0..Vocab-1 */
    float *ref_out = tcl_malloc(nd * 4);
    for (int i = 0; i < n; i++) {
        const int t = i % T, r = tok[i] < 0 ? 0 : tok[i] >= Vocab ? Vocab - 1 : tok[i];
        for (int c = 0; c < C; c++) {
            ref_out[(size_t)i * C + c] = h_wte[(size_t)r * C + c] + h_wpe[(size_t)t * C + c];
            h_dwpe[(size_t)t * C + c] += h_dout[(size_t)i * C + c];
            h_dwte[(size_t)r * C + c] += h_dout[(size_t)i * C + c];
        }
    }
    struct {
        const char *name;
        pair p;
        const float *ref;
        int exact;
    } outs[] = {{"encoder_forward out", out, ref_out, 1},
                {"encoder_backward dwte (sentinel after it kept)", dwte, h_dwte, 1},
                {"encoder_backward dwpe", dwpe, h_dwpe, 0}};
    for (size_t o = 0; o < sizeof outs / sizeof outs[0]; o++) {
        const size_t m = outs[o].p.n, total = m + 2 * PAD;
        float *a = tcl_malloc(total * 4);
        TCL_OK(cf_be_download(GPU, a, cf_view_f32(outs[o].p.g, 0), total * 4));
        int guards = 1;
        for (size_t i = 0; i < PAD; i++)
            if (a[i] != GUARD || a[PAD + m + i] != GUARD) guards = 0;
        if (outs[o].exact) {
            long d = first_diff(a + PAD, outs[o].ref, m);
            expect(d < 0 && guards,
                   "%s with ids outside 0..%d: bit-identical to the clamped host loop (B=%d T=%d "
                   "C=%d)%s",
                   outs[o].name, Vocab - 1, B, T, C, guards ? "" : ", guard elements overwritten");
            if (d >= 0)
                printf("     element %ld: %.9g on OpenCL, %.9g expected\n", d, a[PAD + d],
                       outs[o].ref[d]);
        } else {
            double err = tcl_norm_err(a + PAD, outs[o].ref, m);
            expect(err <= 1e-6 && guards, "%s with ids outside 0..%d: err %.2e (tol 1e-06)%s",
                   outs[o].name, Vocab - 1, err, guards ? "" : ", guard elements overwritten");
        }
        free(a);
    }
    free(tok), free(h_wte), free(h_wpe), free(h_dout), free(h_dwte), free(h_dwpe), free(ref_out);
    pair_free(tokens), pair_free(wte), pair_free(wpe), pair_free(out);
    pair_free(dwte), pair_free(dwpe), pair_free(dout);
}

int main(int argc, char **argv) {
    const char *spec = NULL;
    int small = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--small") == 0) small = tcl_keep_buffers = 1;
        else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) spec = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--small] [--device SPEC]\n", argv[0]);
            return 2;
        }
    }
    int code = 0;
    if (tcl_open("test_cl_encoder", spec, &code) < 0) return code;
    double t0 = cf_time_now();
    /* B*T = 37 with a run of about 28 (a full batch of 16 rows and a partial one), C = 7 (one
     * 4-channel item and 3 single channels); then B*T = 10 and 12. The largest first: the
     * backend's scratch then never grows, and oclgrind's uninitialised-value checker, which
     * loses track of a released buffer's address when it is reused (see tcl_keep_buffers),
     * keeps track of the order the backward sorts into it. */
    test_vs_cpu(1, 37, 7, 3, TOK_HEAVY);
    test_vs_cpu(2, 5, 6, 4, TOK_RANDOM);
    test_bad_tokens(1, 12, 6, 5);
    if (small) return tcl_finish("test_cl_encoder --small", t0);
    test_vs_cpu(3, 17, 40, 11, TOK_RANDOM);
    test_vs_cpu(4, 64, 72, 256, TOK_RANDOM);
    test_vs_cpu(5, 203, 13, 50, TOK_HEAVY);       /* B*T 1015, a run of about 760 */
    test_vs_cpu(3, 700, 20, 2000, TOK_SKEWED);    /* B*T 2100: three tiles of encoder_rank */
    test_vs_cpu(2, 32, 1030, 9, TOK_HEAVY);       /* C > 4 x 256: two groups across a row */
    test_vs_cpu(1, 300, 12, 5, TOK_SAME);         /* one run of every position */
    test_vs_cpu(2, 150, 12, 400, TOK_DESCENDING); /* runs of 1, ranks reversed */
    test_bad_tokens(2, 300, 24, 40);
    return tcl_finish("test_cl_encoder", t0);
}
