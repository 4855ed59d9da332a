/* clformer: data-parallel training over processes (MPI): ranks, the config check, per-rank
 * devices, and gradient averaging in buckets that overlap the backward pass.
 *
 * One interface, two implementations: dist_mpi.c (built with CF_MPI) and dist_none.c (one rank,
 * no MPI), so the training loop reads the same either way. A program that was not started by an
 * MPI launcher makes no MPI call at all and is the single-process program.
 *
 * The data-parallel step (cf_train_step with m->dist set): every rank runs grad_accum_steps
 * micro-batches of its own slice of the global batch (batch_size x grad_accum_steps x N) with the
 * loss scaled by 1 / (grad_accum_steps x N); during the last micro-batch's backward the gradients
 * are summed over the ranks bucket by bucket (MPI_Iallreduce started as each bucket's layers
 * finish, see cf_dist_plan), so every rank ends with the same averaged gradients, and the norm,
 * clipping and AdamW update that follow are identical on every rank. */
#ifndef CF_DIST_H
#define CF_DIST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "clformer/common.h"
#include "clformer/config.h"

struct cf_model;
struct cf_backend_options;

/* Default gradient bucket: about 25 MB, the size PyTorch DDP uses: large enough that the
 * per-message latency is small against the bandwidth term, small enough that the first buckets
 * start early in the backward. */
#define CF_DIST_BUCKET_BYTES ((size_t)25 << 20)

/* ---- the process group ----------------------------------------------------------------------- */

/* Starts the group. launched_size: the number of processes an MPI launcher (mpirun, srun)
 * announced in the environment (the CLI reads it), 0 when the program was not started by one:
 * then no MPI call is made and there is one rank. Fails, naming the fix, when launched_size > 1
 * and clformer was built without MPI. */
int cf_dist_init(int launched_size);
/* Ends the group and returns status. A failure (status < 0, other than CF_ERR_INTERRUPTED, which
 * all ranks agree on) with more than one rank aborts every rank (MPI_Abort) after the message was
 * printed, so one rank's error never leaves the others waiting in a collective. */
int cf_dist_finish(int status);
int cf_dist_rank(void);       /* 0 .. size-1 */
int cf_dist_size(void);       /* 1 without MPI */
int cf_dist_local_rank(void); /* rank among the processes of this node (MPI-3 shared split) */
int cf_dist_built_with_mpi(void);

/* Refuses a config that differs between ranks: a hash of the whole config (as JSON) is compared
 * with rank 0's; a rank whose config differs names the keys and both values. Every rank returns
 * the same status. */
int cf_dist_check_config(const cf_config *c, const char *origin);
/* v[0..n) summed over the ranks, in place (the same result on every rank). */
int cf_dist_sum(double *v, int n);
/* 1 on every rank when flag is non-zero on any rank. */
int cf_dist_any(int flag);
/* flags[0..n) each replaced by cf_dist_any of it, in one collective (the step loop's stop flags). */
void cf_dist_any_n(int *flags, int n);

/* This rank's device from --device: a comma-separated list names one device per rank (rank r takes
 * entry r; a list must have one entry, or at least as many as there are ranks); "auto" (or none)
 * with several ranks takes the GPUs of the node round-robin by local rank (rank 0 of the node the
 * first usable GPU, ...), the CPU backend when the node has none. One rank, one entry, not auto:
 * spec itself. out receives the spec (at most n bytes). */
int cf_dist_device(const char *spec, const struct cf_backend_options *opts, int rank,
                   int local_rank, int size, char *out, size_t n);

/* ---- gradient buckets ------------------------------------------------------------------------ */

/* A contiguous range of the parameter (and gradient) buffer. */
typedef struct {
    size_t off, len; /* elements */
} cf_dist_seg;

/* One all-reduce: segments packed back to back into host staging at host_off; started when the
 * backward reaches stage ordinal `ready` (0: the LM head and final norm, 1 + (NB-1-b): block b,
 * NB + 1: the embeddings). */
typedef struct {
    int seg0, nseg;  /* into the plan's segments */
    size_t host_off; /* elements into the staging buffer */
    size_t len;      /* elements */
    int ready;
} cf_dist_bucket;

typedef struct {
    cf_dist_seg *segs;
    int nseg;
    cf_dist_bucket *buckets;
    int nbuckets;
    int nstages;  /* NB + 2 */
    size_t total; /* elements: the whole parameter buffer */
} cf_dist_plan_t;

/* Buckets of at most bucket_bytes (a larger tensor is split), in the order the backward completes
 * the gradients (cf_model.grad_hook): every parameter element is in exactly one bucket. Needs no
 * backend (the layout of m's config only). */
int cf_dist_plan(const struct cf_model *m, size_t bucket_bytes, cf_dist_plan_t *out);
void cf_dist_plan_free(cf_dist_plan_t *p);
/* The stage ordinal of a grad_hook stage (CF_GRAD_STAGE_HEAD, a block, CF_GRAD_STAGE_EMBED). */
int cf_dist_stage_ordinal(const struct cf_model *m, int stage);

typedef struct cf_dist_grads cf_dist_grads;

/* Communication of the steps since the last reset (for --profile). */
typedef struct {
    int steps;
    int buckets;       /* all-reduces started */
    uint64_t bytes;    /* gradient bytes all-reduced by this rank */
    double comm_s;     /* first all-reduce started -> last one complete, summed over steps */
    double exposed_s;  /* of which waited for after the backward ended (not overlapped) */
    double staging_s;  /* device -> host before, host -> device after the all-reduces */
    double backward_s; /* the last micro-batch's forward + backward, summed over steps */
} cf_dist_stats;

/* How the all-reduces progress while the backward runs:
 *   INLINE  MPI_Iallreduce, moved along by MPI_Testsome at each grad_hook call (the host computes:
 *           the C backend, OpenCL CPU devices; no extra thread competes with the compute)
 *   THREAD  a communication thread runs each bucket's MPI_Allreduce as soon as it is staged, so
 *           the collective progresses while the host waits for the device (GPUs; needs
 *           MPI_THREAD_SERIALIZED, else INLINE)
 *   AUTO    THREAD for a device that computes on its own (GPU, accelerator), else INLINE */
enum cf_dist_comm { CF_DIST_COMM_AUTO = 0, CF_DIST_COMM_INLINE = 1, CF_DIST_COMM_THREAD = 2 };

/* Staging and the plan for m (more than one rank: else there is nothing to average). Sets
 * m->dist; cf_dist_grads_free clears it. */
int cf_dist_grads_create(struct cf_model *m, size_t bucket_bytes, enum cf_dist_comm comm,
                         cf_dist_grads **out);
/* "inline" or "thread": what create chose */
const char *cf_dist_grads_comm(const cf_dist_grads *g);
void cf_dist_grads_free(cf_dist_grads *g);
/* Around the last micro-batch of a step: begin installs the model's grad_hook, which starts each
 * bucket's all-reduce as its gradients are complete; end waits for them, writes the sums back to
 * the gradient buffer and removes the hook. */
int cf_dist_grads_begin(cf_dist_grads *g);
int cf_dist_grads_end(cf_dist_grads *g);
void cf_dist_grads_stats(const cf_dist_grads *g, cf_dist_stats *out);
void cf_dist_grads_reset_stats(cf_dist_grads *g);
/* The --profile lines: all-reduce time and bytes per step and the share hidden by the backward. */
void cf_dist_print_stats(FILE *f, const cf_dist_stats *s, int ranks);

#endif
