/* clformer-allreduce-bench: the time of one MPI all-reduce (float sum, in place, host memory) for
 * the gradient bucket sizes data-parallel training uses, on the ranks mpirun starts: the
 * communication term of the scaling model in BENCHMARKS.md and docs/distributed.md.
 *
 *   mpirun -np N clformer-allreduce-bench [MB ...]        (default 1 4 25 100)
 *
 * Prints, per size, the median of 10 timed rounds (after 2 untimed) of MPI_Allreduce and of
 * MPI_Iallreduce + MPI_Wait (what training uses; MPI libraries often run the two with different
 * algorithms), with the algorithm bandwidth (bytes / time) and bus bandwidth (2 (N-1) / N x bytes
 * / time, the ring's per-link traffic, comparable across N). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    double def[] = {1, 4, 25, 100};
    const int nsz = argc > 1 ? argc - 1 : 4;
    if (rank == 0)
        printf("ranks | call       | MB      | median ms | algbw GB/s | busbw GB/s\n");
    for (int i = 0; i < nsz; i++) {
        const double mb = argc > 1 ? atof(argv[i + 1]) : def[i];
        const size_t n = (size_t)(mb * 1048576.0 / sizeof(float));
        if (n < 1 || n > (size_t)1 << 30) {
            if (rank == 0) fprintf(stderr, "size %g MB: out of range (0, 4096]\n", mb);
            MPI_Finalize();
            return 2;
        }
        float *buf = malloc(n * sizeof(float));
        if (!buf) MPI_Abort(MPI_COMM_WORLD, 3);
        for (size_t k = 0; k < n; k++) buf[k] = (float)(k % 97) * 1e-3f;
        for (int nb = 0; nb < 2; nb++) {
            double t[10];
            for (int r = -2; r < 10; r++) {
                MPI_Barrier(MPI_COMM_WORLD);
                const double t0 = MPI_Wtime();
                if (nb) {
                    MPI_Request q;
                    MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                                   &q);
                    MPI_Wait(&q, MPI_STATUS_IGNORE);
                } else {
                    MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
                }
                double dt = MPI_Wtime() - t0;
                /* the slowest rank's time is the collective's */
                MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
                if (r >= 0) t[r] = dt;
            }
            qsort(t, 10, sizeof t[0], cmp_double);
            const double med = 0.5 * (t[4] + t[5]), bytes = (double)n * sizeof(float);
            if (rank == 0)
                printf("%5d | %-10s | %7.2f | %9.3f | %10.2f | %10.2f\n", size,
                       nb ? "Iallreduce" : "Allreduce", bytes / 1048576.0, med * 1e3,
                       bytes / med / 1e9, 2.0 * (size - 1) / size * bytes / med / 1e9);
        }
        free(buf);
    }
    MPI_Finalize();
    return 0;
}
