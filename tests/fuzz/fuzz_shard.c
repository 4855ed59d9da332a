/* clformer fuzz target: the token shard loader and the dataset metadata. The first input byte
 * picks which: even, the rest is a shard file (cf_shard_read_info, then cf_shard_open with its
 * header, size and id checks, then every token read back); odd, the rest is a meta.json
 * (cf_shard_meta_parse). */
#include "fuzz_common.h"

#include "data/shards.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (data[0] & 1) {
        cf_log_set_callback(cf_fuzz_quiet, NULL);
        cf_shard_meta m;
        (void)cf_shard_meta_parse((const char *)data + 1, size - 1, "fuzz", &m);
        return 0;
    }
    const char *path = cf_fuzz_file(data + 1, size - 1);
    cf_shard_info info;
    int rc_info = cf_shard_read_info(path, &info);
    cf_shard_expect e = {0};
    e.max_vocab = (data[0] & 2) ? 300 : 0; /* with and without the model's vocab_size */
    cf_shard s;
    int rc = cf_shard_open(path, &e, &s);
    if ((rc == CF_OK) && rc_info != CF_OK) abort(); /* open accepted what the header check refused */
    if (rc != CF_OK) return 0;
    uint32_t limit = s.info.vocab_size;
    if (e.max_vocab && e.max_vocab < limit) limit = e.max_vocab;
    int32_t buf[256];
    for (uint64_t a = 0; a < s.info.count; a += 256) {
        size_t n = (size_t)(s.info.count - a < 256 ? s.info.count - a : 256);
        if (cf_shard_read(&s, a, n, buf) != CF_OK) abort();
        for (size_t i = 0; i < n; i++)
            if ((uint32_t)buf[i] >= limit) abort(); /* an id the open check should have refused */
    }
    cf_shard_close(&s);
    return 0;
}
