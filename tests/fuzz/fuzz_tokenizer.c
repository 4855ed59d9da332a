/* clformer fuzz target: the tokenizer.json loader (cf_tokenizer_load_json). A tokenizer the loader
 * accepts must round-trip: decode(encode(text)) == text, for the input's own bytes and a fixed
 * sample, and every id it produces must be below its vocab size. */
#include "fuzz_common.h"

#include <string.h>

#include "tokenizer/tokenizer.h"

static void round_trip(const cf_tokenizer *t, const uint8_t *text, size_t n) {
    cf_token_buf b = {0};
    if (cf_tokenizer_encode(t, text, n, &b) != CF_OK) {
        cf_token_buf_free(&b);
        return;
    }
    uint32_t V = cf_tokenizer_vocab_size(t);
    for (size_t i = 0; i < b.n; i++)
        if (b.ids[i] >= V) abort(); /* an id outside the vocab */
    uint8_t *back = NULL;
    size_t bn = 0;
    if (cf_tokenizer_decode(t, b.ids, b.n, &back, &bn) == CF_OK &&
        (bn != n || (n && memcmp(back, text, n) != 0)))
        abort(); /* the tokenizer does not round-trip */
    free(back);
    cf_token_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char sample[] = "Hello, world! <|endoftext|> caf\xc3\xa9 \xe2\x82\xac 123\n\n\t  x";
    cf_log_set_callback(cf_fuzz_quiet, NULL);
    cf_tokenizer *t = NULL;
    if (cf_tokenizer_load_json((const char *)data, size, "fuzz", &t) != CF_OK) return 0;
    round_trip(t, (const uint8_t *)sample, sizeof sample - 1);
    round_trip(t, data, size < 2048 ? size : 2048);
    uint32_t V = cf_tokenizer_vocab_size(t);
    for (uint32_t id = 0; id < V && id < 4096; id++) {
        size_t len = 0;
        (void)cf_tokenizer_token_bytes(t, id, &len);
    }
    cf_tokenizer_free(t);
    return 0;
}
