/* clformer fuzz target: the OpenCL tuning-file parser (cf_tuning_parse), then the per-shape lookup
 * on what it accepted. */
#include "fuzz_common.h"

#include "backend/opencl/cl_tuning.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = cf_fuzz_text(data, size);
    cf_tuning t;
    char why[512];
    if (cf_tuning_parse(text, "fuzz", &t, why, sizeof why) == CF_OK) {
        static const int shapes[][3] = {{64, 64, 64}, {4096, 768, 3072}, {1, 1, 1}, {512, 50304, 768}};
        for (int s = 0; s < 4; s++)
            for (int ta = 0; ta < 2; ta++)
                for (int tb = 0; tb < 2; tb++) {
                    int exact;
                    (void)cf_tuning_lookup(&t, shapes[s][0], shapes[s][1], shapes[s][2], ta, tb,
                                           &exact);
                }
        char *json = cf_tuning_to_json(&t);
        free(json);
    }
    cf_tuning_free(&t);
    free(text);
    return 0;
}
