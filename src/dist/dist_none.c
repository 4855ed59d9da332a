/* clformer: dist.h without MPI: one rank. Built when CF_MPI is off or no MPI was found; a program
 * that several processes of an MPI launcher run refuses to start instead of training N copies. */
#include "dist/dist.h"
#include "model/gpt.h"

int cf_dist_init(int launched_size) {
    if (launched_size > 1) {
        CF_ERROR("an MPI launcher started %d processes, but this clformer was built without MPI "
                 "(each would train its own model); install libopenmpi-dev and rebuild with "
                 "-DCF_MPI=ON",
                 launched_size);
        return CF_ERR_UNSUPPORTED;
    }
    return CF_OK;
}
int cf_dist_finish(int status) { return status; }
int cf_dist_rank(void) { return 0; }
int cf_dist_size(void) { return 1; }
int cf_dist_local_rank(void) { return 0; }
int cf_dist_built_with_mpi(void) { return 0; }
int cf_dist_check_config(const cf_config *c, const char *origin) { return CF_OK; }
int cf_dist_sum(double *v, int n) { return CF_OK; }
int cf_dist_any(int flag) { return flag != 0; }
void cf_dist_any_n(int *flags, int n) {
    for (int i = 0; i < n; i++) flags[i] = flags[i] != 0;
}

int cf_dist_grads_create(cf_model *m, size_t bucket_bytes, enum cf_dist_comm comm,
                         cf_dist_grads **out) {
    *out = NULL;
    CF_ERROR("dist: gradient averaging needs MPI; this clformer was built without it");
    return CF_ERR_UNSUPPORTED;
}
void cf_dist_grads_free(cf_dist_grads *g) {}
const char *cf_dist_grads_comm(const cf_dist_grads *g) { return "none"; }
int cf_dist_grads_begin(cf_dist_grads *g) { return CF_OK; }
int cf_dist_grads_end(cf_dist_grads *g) { return CF_OK; }
void cf_dist_grads_stats(const cf_dist_grads *g, cf_dist_stats *out) {
    *out = (cf_dist_stats){0};
}
void cf_dist_grads_reset_stats(cf_dist_grads *g) {}
