/* clformer: one-line progress bar on stderr for the tokenizer and data tools. */
#define _POSIX_C_SOURCE 200809L
#include "tokenizer/progress.h"

#include <stdio.h>
#include <unistd.h>

#include "clformer/common.h"

void cf_progress_start(cf_progress *p, const char *label, uint64_t total, int bytes) {
    p->label = label;
    p->total = total;
    p->bytes = bytes;
    p->tty = isatty(2) && cf_log_get_level() >= CF_LOG_INFO;
    p->t0 = cf_time_now();
    p->t_last = 0;
}

static void draw(cf_progress *p, uint64_t done, double now) {
    double dt = now - p->t0 > 1e-9 ? now - p->t0 : 1e-9;
    double frac = p->total ? (double)done / (double)p->total : 0.0;
    if (frac > 1) frac = 1;
    char bar[31];
    int fill = (int)(frac * 30);
    for (int k = 0; k < 30; k++) bar[k] = k < fill ? '#' : '.';
    bar[30] = 0;
    if (p->bytes) {
        double mb = (double)done / 1e6;
        fprintf(stderr, "\r%-10s [%s] %5.1f%% %9.1f MB %7.1f MB/s %6.1fs", p->label, bar,
                100 * frac, mb, mb / dt, dt);
    } else {
        fprintf(stderr, "\r%-10s [%s] %5.1f%% %10llu/%llu %8.0f/s %6.1fs", p->label, bar,
                100 * frac, (unsigned long long)done, (unsigned long long)p->total,
                (double)done / dt, dt);
    }
    fflush(stderr);
}

void cf_progress_update(cf_progress *p, uint64_t done) {
    if (!p->tty) return;
    double now = cf_time_now();
    if (now - p->t_last < 0.1) return;
    p->t_last = now;
    draw(p, done, now);
}

double cf_progress_finish(cf_progress *p, uint64_t done) {
    double now = cf_time_now(), dt = now - p->t0;
    if (p->tty) {
        draw(p, done, now);
        fputc('\n', stderr);
    } else if (p->bytes) {
        CF_INFO("%s: %.1f MB in %.2fs (%.1f MB/s)", p->label, (double)done / 1e6, dt,
                dt > 0 ? (double)done / 1e6 / dt : 0.0);
    } else {
        CF_INFO("%s: %llu in %.2fs", p->label, (unsigned long long)done, dt);
    }
    return dt;
}
