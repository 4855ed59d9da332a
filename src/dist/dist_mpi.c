/* clformer: dist.h over MPI (any MPI-3 implementation: non-blocking collectives and the shared
 * memory communicator split are MPI-3). Built with CF_MPI when CMake finds MPI. */
#include <mpi.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "dist/dist.h"
#include "model/gpt.h"

static struct {
    int active; /* MPI_Init ran (the program was started by a launcher) */
    int rank, size, local_rank;
    MPI_Comm comm;
} g_dist = {0, 0, 1, 0, MPI_COMM_NULL};

/* Ranks other than 0 name themselves in every message (rank 0's output reads as the single-process
 * program's). */
static void rank_log(int level, const char *msg, void *user) {
    static const char *prefix[] = {"error: ", "warning: ", "", "debug: "};
    fprintf(stderr, "rank %d: %s%s\n", g_dist.rank, prefix[level < 0 ? 0 : (level > 3 ? 3 : level)],
            msg);
}

int cf_dist_init(int launched_size) {
    if (launched_size <= 0 || g_dist.active) return CF_OK;
    int provided = 0;
    /* the main thread, and the gradient communication thread while the main thread makes no MPI
     * call (the CPU backend's OpenMP threads never call MPI) */
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) {
        CF_ERROR("MPI_Init failed; check the MPI installation (`mpirun --version`)");
        return CF_ERR_DEVICE;
    }
    g_dist.active = 1;
    MPI_Comm_dup(MPI_COMM_WORLD, &g_dist.comm);
    MPI_Comm_rank(g_dist.comm, &g_dist.rank);
    MPI_Comm_size(g_dist.comm, &g_dist.size);
    MPI_Comm node;
    MPI_Comm_split_type(g_dist.comm, MPI_COMM_TYPE_SHARED, g_dist.rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &g_dist.local_rank);
    MPI_Comm_free(&node);
    if (g_dist.rank != 0) cf_log_set_callback(rank_log, NULL);
    /* mpirun answers Ctrl-C with SIGTERM to every rank, stops forwarding their output and sends
     * SIGKILL a second later: a rank blocked writing to its full output pipe would never reach
     * the interrupt checkpoint (the handler deliberately has no SA_RESTART, so a write already
     * blocked returns EINTR) */
    if (g_dist.size > 1) cf_set_interrupt_unblocks_output(1);
    return CF_OK;
}

int cf_dist_finish(int status) {
    if (!g_dist.active) return status;
    if (status < 0 && status != CF_ERR_INTERRUPTED && g_dist.size > 1) {
        /* the message is out; the other ranks may be waiting in a collective for this one */
        fflush(stdout);
        fflush(stderr);
        MPI_Abort(g_dist.comm, 1);
    }
    MPI_Comm_free(&g_dist.comm);
    MPI_Finalize();
    g_dist.active = 0;
    return status;
}

int cf_dist_rank(void) { return g_dist.rank; }
int cf_dist_size(void) { return g_dist.size; }
int cf_dist_local_rank(void) { return g_dist.local_rank; }
int cf_dist_built_with_mpi(void) { return 1; }

int cf_dist_sum(double *v, int n) {
    if (g_dist.size <= 1) return CF_OK;
    if (MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, g_dist.comm) != MPI_SUCCESS)
        return CF_ERR_DEVICE;
    return CF_OK;
}

void cf_dist_any_n(int *flags, int n) {
    for (int i = 0; i < n; i++) flags[i] = flags[i] != 0;
    if (g_dist.size > 1) MPI_Allreduce(MPI_IN_PLACE, flags, n, MPI_INT, MPI_MAX, g_dist.comm);
}

int cf_dist_any(int flag) {
    int v = flag != 0;
    if (g_dist.size > 1) MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MAX, g_dist.comm);
    return v;
}

/* ---- the config check ------------------------------------------------------------------------ */

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* "key: mine here, theirs on rank 0" for each key whose value differs */
static void diff_configs(const char *mine, const char *theirs, char *out, size_t n) {
    cJSON *a = cJSON_Parse(mine), *b = cJSON_Parse(theirs);
    size_t o = 0;
    out[0] = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, a) {
        const cJSON *other = cJSON_GetObjectItemCaseSensitive(b, it->string);
        char *va = cJSON_PrintUnformatted(it), *vb = other ? cJSON_PrintUnformatted(other) : NULL;
        if (va && (!vb || strcmp(va, vb) != 0) && o < n)
            o += (size_t)snprintf(out + o, n - o, "%s%s %s here, %s on rank 0", o ? "; " : "",
                                  it->string, va, vb ? vb : "(none)");
        cJSON_free(va);
        cJSON_free(vb);
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
}

int cf_dist_check_config(const cf_config *c, const char *origin) {
    if (g_dist.size <= 1) return CF_OK;
    char *js = cf_config_to_json(c);
    if (!js) return CF_ERR_NOMEM;
    uint64_t h = fnv1a(js);
    uint64_t *all = malloc(sizeof *all * (size_t)g_dist.size);
    if (!all) {
        free(js);
        return CF_ERR_NOMEM;
    }
    MPI_Allgather(&h, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, g_dist.comm);
    int bad = 0;
    for (int r = 1; r < g_dist.size; r++) bad += all[r] != all[0];
    if (bad) {
        /* rank 0's config to everyone, so a differing rank can name the keys */
        int len = g_dist.rank == 0 ? (int)strlen(js) + 1 : 0;
        MPI_Bcast(&len, 1, MPI_INT, 0, g_dist.comm);
        char *ref = malloc((size_t)len);
        if (!ref) {
            CF_ERROR("dist: out of host memory comparing the configs of the ranks");
            return cf_dist_finish(CF_ERR_NOMEM); /* the other ranks wait in the broadcast */
        }
        if (g_dist.rank == 0) memcpy(ref, js, (size_t)len);
        MPI_Bcast(ref, len, MPI_CHAR, 0, g_dist.comm);
        if (all[g_dist.rank] != all[0]) {
            char d[1024] = "";
            diff_configs(js, ref, d, sizeof d);
            CF_ERROR("config %s differs between ranks: %s; start every rank with the same config "
                     "file and key=value overrides",
                     origin, d[0] ? d : "(hash differs)");
        }
        if (g_dist.rank == 0)
            CF_ERROR("config %s: %d of %d ranks run a config that differs from rank 0's (their "
                     "messages name the keys); training refused",
                     origin, bad, g_dist.size);
        free(ref);
        /* every message is out before the ranks stop */
        fflush(stderr);
        MPI_Barrier(g_dist.comm);
    }
    free(all);
    free(js);
    return bad ? CF_ERR_INVALID : CF_OK;
}

/* ---- gradient averaging ---------------------------------------------------------------------- */

struct cf_dist_grads {
    cf_model *m;
    cf_dist_plan_t plan;
    float *host;      /* (plan.total) staging, bucket i at buckets[i].host_off: the backend's
                       * host memory (pinned and mapped on OpenCL) */
    void *host_handle;
    int threaded;     /* CF_DIST_COMM_THREAD chosen */
    int next;         /* buckets staged and started this step */
    double t_begin, t_first, t_last;
    cf_dist_stats st;
    /* inline: one request per bucket (MPI_REQUEST_NULL when done or not started) */
    MPI_Request *req;
    int *idx;         /* Testsome's scratch */
    int pending;      /* started and not complete */
    /* thread: buckets [done, next) are queued; the thread all-reduces them in order */
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, quit, failed;
};

static void note_done(cf_dist_grads *g, int n) {
    if (n == MPI_UNDEFINED || n <= 0) return;
    g->pending -= n;
    g->t_last = cf_time_now();
}

/* inline: lets MPI move the started all-reduces along (most implementations progress only inside
 * MPI calls) */
static void progress(cf_dist_grads *g) {
    if (g->threaded || g->pending <= 0) return;
    int n = 0;
    MPI_Testsome(g->next, g->req, &n, g->idx, MPI_STATUSES_IGNORE);
    note_done(g, n);
}

/* thread: each queued bucket in order with a blocking MPI_Allreduce; the main thread makes no MPI
 * call while buckets are queued (MPI_THREAD_SERIALIZED) */
static void *comm_thread(void *arg) {
    cf_dist_grads *g = arg;
    pthread_mutex_lock(&g->mu);
    for (;;) {
        while (g->done == g->next && !g->quit) pthread_cond_wait(&g->cv, &g->mu);
        if (g->done == g->next && g->quit) break;
        const cf_dist_bucket *b = &g->plan.buckets[g->done];
        pthread_mutex_unlock(&g->mu);
        const int rc = MPI_Allreduce(MPI_IN_PLACE, g->host + b->host_off, (int)b->len, MPI_FLOAT,
                                     MPI_SUM, g_dist.comm);
        const double t = cf_time_now();
        pthread_mutex_lock(&g->mu);
        g->failed |= rc != MPI_SUCCESS;
        g->t_last = t;
        g->done++;
        pthread_cond_broadcast(&g->cv);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

static int start_bucket(cf_dist_grads *g, int i) {
    const cf_dist_bucket *b = &g->plan.buckets[i];
    cf_model *m = g->m;
    const double t0 = cf_time_now();
    float *dst = g->host + b->host_off;
    for (int s = b->seg0; s < b->seg0 + b->nseg; s++) {
        const cf_dist_seg *sg = &g->plan.segs[s];
        CF_TRY(cf_be_download(m->be, dst, cf_view_f32(m->grads_buf, sg->off),
                              sg->len * sizeof(float)));
        dst += sg->len;
    }
    const double t1 = cf_time_now();
    g->st.staging_s += t1 - t0;
    if (g->next == 0) g->t_first = t1;
    g->st.buckets++;
    g->st.bytes += (uint64_t)b->len * sizeof(float);
    if (g->threaded) {
        pthread_mutex_lock(&g->mu);
        g->next++;
        pthread_cond_broadcast(&g->cv);
        pthread_mutex_unlock(&g->mu);
        return CF_OK;
    }
    if (MPI_Iallreduce(MPI_IN_PLACE, g->host + b->host_off, (int)b->len, MPI_FLOAT, MPI_SUM,
                       g_dist.comm, &g->req[i]) != MPI_SUCCESS) {
        CF_ERROR("dist: MPI_Iallreduce of gradient bucket %d failed", i);
        return CF_ERR_DEVICE;
    }
    g->next++;
    g->pending++;
    return CF_OK;
}

static int grad_hook(void *user, int stage) {
    cf_dist_grads *g = user;
    const int ord = cf_dist_stage_ordinal(g->m, stage);
    while (g->next < g->plan.nbuckets && g->plan.buckets[g->next].ready <= ord)
        CF_TRY(start_bucket(g, g->next));
    progress(g);
    return CF_OK;
}

int cf_dist_grads_create(cf_model *m, size_t bucket_bytes, enum cf_dist_comm comm,
                         cf_dist_grads **out) {
    *out = NULL;
    if (bucket_bytes > (size_t)1 << 30) bucket_bytes = (size_t)1 << 30; /* an int count */
    cf_dist_grads *g = calloc(1, sizeof *g);
    if (!g) return CF_ERR_NOMEM;
    g->m = m;
    int rc = cf_dist_plan(m, bucket_bytes, &g->plan);
    if (rc < 0) {
        free(g);
        return rc;
    }
    void *host = NULL;
    rc = cf_be_host_alloc(m->be, sizeof(float) * g->plan.total, &host, &g->host_handle);
    g->host = host;
    g->req = malloc(sizeof *g->req * (size_t)g->plan.nbuckets);
    g->idx = malloc(sizeof *g->idx * (size_t)g->plan.nbuckets);
    if (rc < 0 || !g->req || !g->idx) {
        cf_dist_grads_free(g);
        return rc < 0 ? rc : CF_ERR_NOMEM;
    }
    for (int i = 0; i < g->plan.nbuckets; i++) g->req[i] = MPI_REQUEST_NULL;
    if (comm == CF_DIST_COMM_AUTO) {
        cf_backend_info info;
        memset(&info, 0, sizeof info);
        comm = cf_be_info(m->be, &info) == CF_OK && info.device_type != CF_DEVICE_CPU
                   ? CF_DIST_COMM_THREAD
                   : CF_DIST_COMM_INLINE;
    }
    if (comm == CF_DIST_COMM_THREAD) {
        int level = MPI_THREAD_SINGLE;
        MPI_Query_thread(&level);
        if (level < MPI_THREAD_SERIALIZED) {
            CF_WARN("dist: this MPI gives no MPI_THREAD_SERIALIZED; the gradient all-reduce "
                    "progresses from the backward's thread instead of its own");
        } else {
            pthread_mutex_init(&g->mu, NULL);
            pthread_cond_init(&g->cv, NULL);
            if (pthread_create(&g->thread, NULL, comm_thread, g) == 0) {
                g->thread_started = 1;
                g->threaded = 1;
            } else {
                CF_WARN("dist: no communication thread (pthread_create failed); the gradient "
                        "all-reduce progresses from the backward's thread");
            }
        }
    }
    m->dist = g;
    *out = g;
    return CF_OK;
}

const char *cf_dist_grads_comm(const cf_dist_grads *g) {
    return g && g->threaded ? "thread" : "inline";
}

void cf_dist_grads_free(cf_dist_grads *g) {
    if (!g) return;
    if (g->m && g->m->dist == g) {
        g->m->dist = NULL;
        g->m->grad_hook = NULL;
    }
    int busy = g->pending > 0;
    if (g->thread_started) {
        pthread_mutex_lock(&g->mu);
        busy |= g->done < g->next;
        g->quit = 1;
        pthread_cond_broadcast(&g->cv);
        pthread_mutex_unlock(&g->mu);
        /* a thread inside an all-reduce a failed rank never joins would never return: the run is
         * on its way to MPI_Abort, which ends it */
        if (busy)
            pthread_detach(g->thread);
        else
            pthread_join(g->thread, NULL);
    }
    if (busy) return; /* the staging, and g, may still be written */
    if (g->thread_started) {
        pthread_mutex_destroy(&g->mu);
        pthread_cond_destroy(&g->cv);
    }
    cf_be_host_free(g->m->be, g->host, g->host_handle);
    free(g->req);
    free(g->idx);
    cf_dist_plan_free(&g->plan);
    free(g);
}

int cf_dist_grads_begin(cf_dist_grads *g) {
    if (!g) return CF_OK;
    g->next = 0;
    g->pending = 0;
    g->done = 0;
    g->t_begin = cf_time_now();
    g->t_first = g->t_last = 0.0;
    g->m->grad_hook = grad_hook;
    g->m->grad_hook_user = g;
    return CF_OK;
}

int cf_dist_grads_end(cf_dist_grads *g) {
    if (!g) return CF_OK;
    cf_model *m = g->m;
    m->grad_hook = NULL;
    const double t_bwd = cf_time_now();
    g->st.backward_s += t_bwd - g->t_begin;
    /* a backward that did not reach its last stage (none today) leaves buckets to start */
    while (g->next < g->plan.nbuckets) CF_TRY(start_bucket(g, g->next));
    if (g->threaded) {
        pthread_mutex_lock(&g->mu);
        while (g->done < g->next) pthread_cond_wait(&g->cv, &g->mu);
        const int failed = g->failed;
        pthread_mutex_unlock(&g->mu);
        if (failed) {
            CF_ERROR("dist: the gradient all-reduce failed");
            return CF_ERR_DEVICE;
        }
    }
    while (g->pending > 0) {
        int n = 0;
        if (MPI_Waitsome(g->next, g->req, &n, g->idx, MPI_STATUSES_IGNORE) != MPI_SUCCESS) {
            CF_ERROR("dist: waiting for the gradient all-reduce failed");
            return CF_ERR_DEVICE;
        }
        note_done(g, n);
    }
    const double t_done = cf_time_now();
    g->st.exposed_s += t_done - t_bwd;
    g->st.comm_s += g->t_last - g->t_first;
    for (int i = 0; i < g->plan.nbuckets; i++) {
        const cf_dist_bucket *b = &g->plan.buckets[i];
        const float *src = g->host + b->host_off;
        for (int s = b->seg0; s < b->seg0 + b->nseg; s++) {
            const cf_dist_seg *sg = &g->plan.segs[s];
            CF_TRY(cf_be_upload(m->be, cf_view_f32(m->grads_buf, sg->off), src,
                                sg->len * sizeof(float)));
            src += sg->len;
        }
    }
    g->st.staging_s += cf_time_now() - t_done;
    g->st.steps++;
    return CF_OK;
}

void cf_dist_grads_stats(const cf_dist_grads *g, cf_dist_stats *out) {
    *out = g ? g->st : (cf_dist_stats){0};
}

void cf_dist_grads_reset_stats(cf_dist_grads *g) {
    if (g) memset(&g->st, 0, sizeof g->st);
}
