/* clformer: one-line progress bar on stderr for the tokenizer and data tools (quiet when stderr is
 * not a terminal or the log level is below info; a summary line is logged at the end instead). */
#ifndef CF_TOKENIZER_PROGRESS_H
#define CF_TOKENIZER_PROGRESS_H

#include <stdint.h>

typedef struct {
    const char *label;
    uint64_t total; /* units of work; 0 when unknown */
    int bytes;      /* 1: units are bytes, show MB and MB/s */
    int tty;        /* draw the bar */
    double t0, t_last;
} cf_progress;

void cf_progress_start(cf_progress *p, const char *label, uint64_t total, int bytes);
/* Redraws at most ten times a second. */
void cf_progress_update(cf_progress *p, uint64_t done);
/* Final state, newline (or an info line when no bar was drawn); returns elapsed seconds. */
double cf_progress_finish(cf_progress *p, uint64_t done);

#endif
