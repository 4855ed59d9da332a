/* clformer fuzz target: the config loader (cf_config_load on a file, cf_config_set on a
 * key=value line). A loaded config must pass its own validation again. */
#include "fuzz_common.h"

#include <string.h>

#include "clformer/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cf_config c;
    if (cf_config_load(cf_fuzz_file(data, size), &c) == CF_OK &&
        cf_config_validate(&c, "fuzz") != CF_OK)
        abort(); /* the loader returned a config its own validation refuses */
    if (size < 512) {
        char *kv = cf_fuzz_text(data, size);
        cf_config d;
        cf_config_defaults(&d);
        cf_config_set(&d, kv, "fuzz");
        free(kv);
    }
    return 0;
}
