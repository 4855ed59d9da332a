/* clformer fuzz target: the safetensors reader (cf_st_open_kind). Every tensor the reader accepts
 * is read to its last byte, so a data range outside the file shows up under ASan. */
#include "fuzz_common.h"

#include <string.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cf_st_file *f = NULL;
    if (cf_st_open_kind(cf_fuzz_file(data, size), "fuzz", &f) != CF_OK) return 0;
    volatile unsigned sum = 0;
    for (int i = 0; i < cf_st_count(f); i++) {
        const cf_st_tensor *t = cf_st_get(f, i);
        if (!t || !t->name || cf_st_find(f, t->name) == NULL) abort();
        const unsigned char *p = t->data;
        for (size_t k = 0; p && k < t->nbytes; k++) sum += p[k];
    }
    for (int i = 0; i < cf_st_meta_count(f); i++) {
        const char *k = cf_st_meta_key(f, i);
        if (!k || !cf_st_meta(f, k)) abort();
        sum += (unsigned)strlen(cf_st_meta(f, k));
    }
    (void)sum;
    cf_st_close(f);
    return 0;
}
